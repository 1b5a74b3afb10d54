/* Grey level size zone (IBSI-1 section 3.8) and distance zone (3.9)
 * matrices: zones are the connected sets of ROI voxels of one grey level
 * (8-connected in a slice, 26-connected in 3-D); a zone's distance is the
 * smallest over its voxels of the 4- (slice) or 6-connected (3-D) number of
 * steps to the nearest voxel outside the ROI, a border voxel being at 1. */
#include <stdlib.h>
#include <string.h>

#include "texture.h"

static const char *const szm_names[] = {"Small zone emphasis",
                                        "Large zone emphasis",
                                        "Low grey level emphasis",
                                        "High grey level emphasis",
                                        "Small zone low grey level emphasis",
                                        "Small zone high grey level emphasis",
                                        "Large zone low grey level emphasis",
                                        "Large zone high grey level emphasis",
                                        "Grey level non-uniformity",
                                        "Normalised grey level non-uniformity",
                                        "Zone size non-uniformity",
                                        "Normalised zone size non-uniformity",
                                        "Zone percentage",
                                        "Grey level variance",
                                        "Zone size variance",
                                        "Zone size entropy"};
static const char *const szm_tags[] = {
    "sze",  "lze",       "lgze", "hgze",      "szlge",  "szhge",  "lzlge",  "lzhge",
    "glnu", "glnu_norm", "zsnu", "zsnu_norm", "z_perc", "gl_var", "zs_var", "zs_entr"};
static const char *const dzm_names[] = {"Small distance emphasis",
                                        "Large distance emphasis",
                                        "Low grey level emphasis",
                                        "High grey level emphasis",
                                        "Small distance low grey level emphasis",
                                        "Small distance high grey level emphasis",
                                        "Large distance low grey level emphasis",
                                        "Large distance high grey level emphasis",
                                        "Grey level non-uniformity",
                                        "Normalised grey level non-uniformity",
                                        "Zone distance non-uniformity",
                                        "Normalised zone distance non-uniformity",
                                        "Zone percentage",
                                        "Grey level variance",
                                        "Zone distance variance",
                                        "Zone distance entropy"};
static const char *const dzm_tags[] = {
    "sde",  "lde",       "lgze", "hgze",      "sdlge",  "sdhge",  "ldlge",  "ldhge",
    "glnu", "glnu_norm", "zdnu", "zdnu_norm", "z_perc", "gl_var", "zd_var", "zd_entr"};

static long region_voxels(const Roi *r, int z) {
  return z < 0 ? (long)r->nx * r->ny * r->nz : (long)r->nx * r->ny;
}

/* Steps to the outside of the ROI, per voxel of the region (slice z or the volume), by
 * breadth-first search from every outside voxel; voxels past the image edge are outside. */
static void distance_map(const Roi *r, int z, int *dist, long *queue) {
  const int z0 = z < 0 ? 0 : z, nz = z < 0 ? r->nz : 1;
  const long n = region_voxels(r, z);
  long head = 0, tail = 0;
  for (long i = 0; i < n; i++) {
    const int x = (int)(i % r->nx), y = (int)(i / r->nx % r->ny),
              k = z0 + (int)(i / ((long)r->nx * r->ny));
    const int in = r->roi[roi_index(r, x, y, k)];
    const int edge = x == 0 || y == 0 || x == r->nx - 1 || y == r->ny - 1 ||
                     (z < 0 && (k == 0 || k == r->nz - 1));
    dist[i] = in ? (edge ? 1 : 0) : -1; /* -1 outside; 0 unknown */
    if (in && edge) queue[tail++] = i;
  }
  for (long i = 0; i < n; i++) /* ROI voxels next to an outside voxel */
    if (dist[i] == -1) {
      const int x = (int)(i % r->nx), y = (int)(i / r->nx % r->ny),
                k = (int)(i / ((long)r->nx * r->ny));
      const int nb[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
      for (int d = 0; d < (z < 0 ? 6 : 4); d++) {
        const int xx = x + nb[d][0], yy = y + nb[d][1], kk = k + nb[d][2];
        if (xx < 0 || yy < 0 || kk < 0 || xx >= r->nx || yy >= r->ny || kk >= nz) continue;
        const long j = ((long)kk * r->ny + yy) * r->nx + xx;
        if (dist[j] == 0) dist[j] = 1, queue[tail++] = j;
      }
    }
  while (head < tail) {
    const long i = queue[head++];
    const int x = (int)(i % r->nx), y = (int)(i / r->nx % r->ny),
              k = (int)(i / ((long)r->nx * r->ny));
    const int nb[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
    for (int d = 0; d < (z < 0 ? 6 : 4); d++) {
      const int xx = x + nb[d][0], yy = y + nb[d][1], kk = k + nb[d][2];
      if (xx < 0 || yy < 0 || kk < 0 || xx >= r->nx || yy >= r->ny || kk >= nz) continue;
      const long j = ((long)kk * r->ny + yy) * r->nx + xx;
      if (dist[j] == 0) dist[j] = dist[i] + 1, queue[tail++] = j;
    }
  }
}

/* Zones of the region, each added to m as (level, size) or (level, distance). */
static void zones(const Roi *r, int z, int by_distance, double *m, int nj, double *nv) {
  const int z0 = z < 0 ? 0 : z, nz = z < 0 ? r->nz : 1;
  const long n = region_voxels(r, z);
  unsigned char *seen = calloc(n, 1);
  long *stack = malloc(sizeof(long) * n), *queue = by_distance ? malloc(sizeof(long) * n) : NULL;
  int *dist = by_distance ? malloc(sizeof(int) * n) : NULL;
  *nv = 0;
  if (!seen || !stack || (by_distance && (!queue || !dist))) {
    free(seen), free(stack), free(queue), free(dist);
    return; /* an empty matrix: left out, as the caller's allocation check reports */
  }
  if (by_distance) distance_map(r, z, dist, queue);
  for (long i = 0; i < n; i++) {
    const int x = (int)(i % r->nx), y = (int)(i / r->nx % r->ny),
              k = (int)(i / ((long)r->nx * r->ny));
    const long g_index = roi_index(r, x, y, z0 + k);
    if (!r->roi[g_index]) continue;
    (*nv)++;
    if (seen[i]) continue;
    const int g = r->q[g_index];
    long top = 0, size = 0;
    int best = 1 << 30;
    stack[top++] = i, seen[i] = 1;
    while (top) {
      const long c = stack[--top];
      size++;
      if (by_distance && dist[c] < best) best = dist[c];
      const int cx = (int)(c % r->nx), cy = (int)(c / r->nx % r->ny),
                ck = (int)(c / ((long)r->nx * r->ny));
      for (int dk = nz > 1 ? -1 : 0; dk <= (nz > 1 ? 1 : 0); dk++)
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++) {
            const int xx = cx + dx, yy = cy + dy, kk = ck + dk;
            if (xx < 0 || yy < 0 || kk < 0 || xx >= r->nx || yy >= r->ny || kk >= nz) continue;
            const long j = ((long)kk * r->ny + yy) * r->nx + xx;
            const long gj = roi_index(r, xx, yy, z0 + kk);
            if (seen[j] || !r->roi[gj] || r->q[gj] != g) continue;
            seen[j] = 1, stack[top++] = j;
          }
    }
    const long col = by_distance ? best : size;
    if (col >= 1 && col <= nj) m[(long)(g - 1) * nj + (col - 1)] += 1;
  }
  free(seen), free(stack), free(queue), free(dist);
}

static size_t szm_size(const Roi *r) { return (size_t)r->ng * (size_t)r->n_roi; }
static size_t dzm_size(const Roi *r) { return (size_t)r->ng * roi_longest(r); }

static void szm_build(const Roi *r, int z, const int *dir, double *m, double *nv) {
  (void)dir;
  memset(m, 0, sizeof(double) * szm_size(r));
  zones(r, z, 0, m, (int)r->n_roi, nv);
}

static void dzm_build(const Roi *r, int z, const int *dir, double *m, double *nv) {
  (void)dir;
  memset(m, 0, sizeof(double) * dzm_size(r));
  zones(r, z, 1, m, roi_longest(r), nv);
}

static int szm_features(const Roi *r, const double *m, double nv, double *out) {
  return texture_emphasis(m, r->ng, (int)r->n_roi, nv, out);
}

static int dzm_features(const Roi *r, const double *m, double nv, double *out) {
  return texture_emphasis(m, r->ng, roi_longest(r), nv, out);
}

static const TextureFamily size_zones = {"Size zone matrix", "szm",    16,        szm_names,
                                         szm_tags,           szm_size, szm_build, szm_features};
static const TextureFamily distance_zones = {
    "Distance zone matrix", "dzm", 16, dzm_names, dzm_tags, dzm_size, dzm_build, dzm_features};

Status rad_zones(const Roi *r, RadiomicsFeatures *f, MrError *err) {
  Status s = texture_regional(r, &size_zones, f, err);
  return s == STATUS_OK ? texture_regional(r, &distance_zones, f, err) : s;
}
