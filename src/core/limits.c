/* The bounds readers check declared sizes against (MrLimits), one setting
 * for the process: the CLI's --max-megapixels and --max-file-gb set them. */
#include "medrobust.h"

static MrLimits limits = {
    .image_pixels = (uint64_t)40 << 20, .file_bytes = (uint64_t)16 << 30, .inflate_ratio = 200};

MrLimits mr_limits(void) { return limits; }
void mr_set_limits(MrLimits l) { limits = l; }
