// Loader: being written (issue 2).
#include "config/config.h"
