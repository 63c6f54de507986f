#include "agent/cli.h"

int main(int argc, char** argv) {
  return storewatch::agent::run_cli(argc, argv);
}
