#include "pm_process.h"
