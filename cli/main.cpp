#include "cli/cli.h"

int main(int argc, char** argv) {
  return storewatch::cli::run_cli(argc, argv);
}
