#pragma once
/// \file
/// The `storewatch` command line (DESIGN §7): CLI11 subcommands, aligned
/// tables or `--json`, exit codes 0 ok, 1 failure, 2 usage or config error.

namespace storewatch::cli {

int run_cli(int argc, char** argv);

}  // namespace storewatch::cli
