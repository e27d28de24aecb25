// The op table's double instantiation (op_table.hpp declares it extern; float and double
// are separate files so they compile in parallel): the suite (test_op_table.cpp) and
// the report (gradcheck_report.cpp) link it.
#include "op_table.hpp"

template std::vector<tapegrad::testing::OpInfo<double>> tapegrad::testing::op_table<double>();
