/* Intensity windows: how modality units (Hounsfield units for CT) become the
 * [0,1] pixels a model sees, as a radiologist's window does on screen: the
 * center and width of the displayed range, everything outside it clipped.
 * The presets are the usual CT display windows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medrobust.h"

static const struct {
  const char *name;
  double center, width;
} presets[] = {{"lung", -600, 1500},
               {"mediastinum", 50, 350},
               {"bone", 400, 1800},
               {"brain", 40, 80},
               {"abdomen", 40, 400}};

int window_parse(const char *text, IntensityWindow *out) {
  for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
    if (!strcmp(text, presets[i].name)) {
      *out = (IntensityWindow){presets[i].center, presets[i].width};
      return 1;
    }
  char *end;
  const double center = strtod(text, &end);
  if (end == text || *end != ',') return 0;
  const char *second = end + 1;
  const double width = strtod(second, &end);
  if (end == second || *end || !isfinite(center) || !(width > 0) || !isfinite(width)) return 0;
  *out = (IntensityWindow){center, width};
  return 1;
}

const char *window_presets(void) {
  static char names[128];
  if (!names[0])
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
      snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
               presets[i].name);
  return names;
}

float window_apply(const IntensityWindow *w, double value) {
  const double x = (value - (w->center - w->width / 2)) / w->width;
  return (float)(x < 0 ? 0 : x > 1 ? 1 : x);
}

IntensityWindow window_of_range(const float *values, size_t n) {
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++) lo = fmin(lo, values[i]), hi = fmax(hi, values[i]);
  if (!(hi >= lo)) lo = hi = 0; /* no values */
  return (IntensityWindow){(lo + hi) / 2, hi > lo ? hi - lo : 1};
}

void window_describe(const IntensityWindow *w, char *out, size_t n) {
  for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
    if (presets[i].center == w->center && presets[i].width == w->width) {
      snprintf(out, n, "%s (center %g, width %g)", presets[i].name, w->center, w->width);
      return;
    }
  snprintf(out, n, "center %g, width %g", w->center, w->width);
}
