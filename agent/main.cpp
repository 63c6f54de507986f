// Placeholder while the agent is assembled (issue 2).
#include <cstdio>
int main() { std::puts("storewatch " STOREWATCH_VERSION); }
