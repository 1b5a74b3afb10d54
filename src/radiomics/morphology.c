/* Morphological features (IBSI-1 section 3.1): the ROI's surface mesh,
 * volume, area and their ratios, the PCA axes of its voxels, bounding and
 * enclosing volumes, the convex hull (Qhull, Debian's libqhull) and
 * intensity-weighted spatial statistics.
 *
 * The mesh is marching cubes at iso-level 0.5 on the zero-padded mask,
 * vertices at the edge midpoints. It is built without the usual 256-case
 * table: on each cube face the edge crossings are joined entry-to-exit (walking
 * the face counter-clockwise from outside, each segment cuts off the inside
 * corners; on an ambiguous face it joins the two inside corners); a crossing is
 * an exit on one face and an entry on its neighbour, so the segments of a
 * cube chain into closed, consistently oriented loops. A loop of more than
 * three vertices is not flat in general: of its triangulations, the one
 * enclosing the most volume is taken (the surface bulges outward, as over a
 * lump of voxels; this reproduces IBSI's mesh volume and area, 556 and 388 mm^2
 * on the digital phantom), giving triangles with outward normals. Neighbouring cubes cut a shared
 * face the same way, so the mesh is closed and its volume follows from the divergence theorem.
 * (Debian has no C marching-cubes library: VTK is C++ and very large.) */
#include <libqhull_r/qhull_ra.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "radiomics.h"

void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
            double *work, const int *lwork, int *info);

/* corners of a cube face, counter-clockwise seen from outside; corner bits: x 1, y 2, z 4 */
static const int face_corners[6][4] = {{0, 4, 6, 2}, {1, 3, 7, 5}, {0, 1, 5, 4},
                                       {2, 6, 7, 3}, {0, 2, 3, 1}, {4, 5, 7, 6}};

typedef struct {
  double *v; /* triangles, 9 coordinates each, in mm */
  long n, cap;
  long *keys; /* each loop vertex by its doubled grid coordinates (exact integers) */
  long n_keys, cap_keys;
  long stride, plane; /* of those keys: key = gz * plane + gy * stride + gx */
  double *pts;        /* unique vertices (3 each), for the hull, the box and the diameter */
  long n_pts;
} Mesh;

static int key_push(Mesh *m, long key) {
  if (m->n_keys == m->cap_keys) {
    const long cap = m->cap_keys ? 2 * m->cap_keys : 1024;
    long *k = realloc(m->keys, sizeof(long) * cap);
    if (!k) return 0;
    m->keys = k, m->cap_keys = cap;
  }
  m->keys[m->n_keys++] = key;
  return 1;
}

static int mesh_push(Mesh *m, const double t[9]) {
  if (m->n == m->cap) {
    const long cap = m->cap ? 2 * m->cap : 1024;
    double *v = realloc(m->v, sizeof(double) * 9 * cap);
    if (!v) return 0;
    m->v = v, m->cap = cap;
  }
  memcpy(m->v + 9 * m->n++, t, sizeof(double) * 9);
  return 1;
}

/* the edge between corners a and b (differing in one bit), as an index 0..11 of the cube:
 * axis * 4 + the two other bits */
static int edge_id(int a, int b) {
  const int axis = (a ^ b) == 1 ? 0 : (a ^ b) == 2 ? 1 : 2, low = a & b;
  const int rest = axis == 0 ? low >> 1 : axis == 1 ? (low & 1) | (low >> 2) << 1 : low & 3;
  return axis * 4 + rest;
}

static void edge_point(int a, int b, const double origin[3], const double size[3], double p[3]) {
  for (int k = 0; k < 3; k++) {
    const double ca = (a >> k) & 1, cb = (b >> k) & 1;
    p[k] = (origin[k] + 0.5 * (ca + cb)) * size[k];
  }
}

/* signed volume of the tetrahedron (origin, a, b, c), times 6 */
static double det3(const double *a, const double *b, const double *c) {
  return a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0]) +
         a[2] * (b[0] * c[1] - b[1] * c[0]);
}

/* The triangulation of a loop that encloses the most volume (dynamic programming over
 * the polygon's triangulations): a non-planar loop bulges outward, as the surface of a
 * convex lump of voxels does. */
static int triangulate(Mesh *m, double loop[][3], int len) {
  double best[12][12] = {{0}};
  int split[12][12] = {{0}};
  for (int gap = 2; gap < len; gap++)
    for (int i = 0; i + gap < len; i++) {
      const int j = i + gap;
      best[i][j] = -INFINITY, split[i][j] = i + 1; /* a fan, should no sum compare */
      for (int k = i + 1; k < j; k++) {
        const double v = best[i][k] + best[k][j] + det3(loop[i], loop[k], loop[j]);
        if (v > best[i][j]) best[i][j] = v, split[i][j] = k;
      }
    }
  int stack[24][2], top = 0;
  stack[top][0] = 0, stack[top++][1] = len - 1;
  while (top) {
    const int i = stack[--top][0], j = stack[top][1];
    if (j - i < 2) continue;
    const int k = split[i][j];
    const double t[9] = {loop[i][0], loop[i][1], loop[i][2], loop[k][0], loop[k][1],
                         loop[k][2], loop[j][0], loop[j][1], loop[j][2]};
    if (!mesh_push(m, t)) return 0;
    stack[top][0] = i, stack[top++][1] = k;
    stack[top][0] = k, stack[top++][1] = j;
  }
  return 1;
}

/* Triangles of one cube with corner occupancy bits `in` at grid origin. */
static int cube_triangles(Mesh *m, int in, const double origin[3], const double size[3]) {
  int next[12], from_a[12], from_b[12];
  for (int e = 0; e < 12; e++) next[e] = -1;
  for (int f = 0; f < 6; f++) {
    int cross[4], is_entry[4], nc = 0;
    for (int k = 0; k < 4; k++) {
      const int a = face_corners[f][k], b = face_corners[f][(k + 1) & 3];
      const int ia = (in >> a) & 1, ib = (in >> b) & 1;
      if (ia == ib) continue;
      const int e = edge_id(a, b);
      from_a[e] = a, from_b[e] = b;
      cross[nc] = e, is_entry[nc++] = ib; /* outside -> inside going counter-clockwise */
    }
    for (int k = 0; k < nc; k++) /* each entry to the previous exit: the inside stays joined */
      if (is_entry[k]) next[cross[k]] = cross[(k + nc - 1) % nc];
  }
  int used[12] = {0};
  for (int start = 0; start < 12; start++) {
    if (next[start] < 0 || used[start]) continue;
    double loop[12][3];
    int len = 0;
    for (int e = start; !used[e] && len < 12; e = next[e]) {
      used[e] = 1;
      edge_point(from_a[e], from_b[e], origin, size, loop[len++]);
      /* the same point in doubled grid units (origin is >= -1, so +2 keeps it >= 0) */
      long g[3];
      for (int k = 0; k < 3; k++)
        g[k] = 2 * (long)origin[k] + ((from_a[e] >> k) & 1) + ((from_b[e] >> k) & 1) + 2;
      if (!key_push(m, g[2] * m->plane + g[1] * m->stride + g[0])) return 0;
    }
    if (!triangulate(m, loop, len)) return 0;
  }
  return 1;
}

static int cmp_key(const void *a, const void *b) {
  const long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

/* The mesh of the morphological mask, grid point (i, j, k) of the padded grid being voxel
 * (i - 1, j - 1, k - 1); unique vertices keyed by their doubled grid coordinates. */
static int build_mesh(const Roi *r, Mesh *m) {
  const int px = r->nx + 2, py = r->ny + 2, pz = r->nz + 2;
  const double size[3] = {r->sx, r->sy, r->sz};
  m->stride = 2L * (px + 1), m->plane = m->stride * 2L * (py + 1);
#define INSIDE(i, j, k)                                                                \
  ((i) >= 1 && (j) >= 1 && (k) >= 1 && (i) <= r->nx && (j) <= r->ny && (k) <= r->nz && \
   r->morph[roi_index(r, (i)-1, (j)-1, (k)-1)])
  for (int k = 0; k + 1 < pz; k++)
    for (int j = 0; j + 1 < py; j++)
      for (int i = 0; i + 1 < px; i++) {
        int in = 0;
        for (int c = 0; c < 8; c++) in |= INSIDE(i + (c & 1), j + (c >> 1 & 1), k + (c >> 2)) << c;
        if (in == 0 || in == 255) continue;
        const double origin[3] = {i - 1, j - 1, k - 1};
        if (!cube_triangles(m, in, origin, size)) return 0;
      }
#undef INSIDE
  /* unique vertices, by their integer keys (not from the mm positions: a file may state
   * any voxel size, and the fuzzer's overflowed on the way back) */
  long *keys = m->keys;
  const long stride = m->stride, plane = m->plane;
  qsort(keys, m->n_keys, sizeof(long), cmp_key);
  long u = 0;
  for (long t = 0; t < m->n_keys; t++)
    if (!t || keys[t] != keys[t - 1]) keys[u++] = keys[t];
  m->pts = malloc(sizeof(double) * 3 * (u + 1));
  if (!m->pts) return 0;
  for (long t = 0; t < u; t++) {
    const long gz = keys[t] / plane, gy = keys[t] % plane / stride, gx = keys[t] % stride;
    m->pts[3 * t] = (gx - 2) * 0.5 * size[0];
    m->pts[3 * t + 1] = (gy - 2) * 0.5 * size[1];
    m->pts[3 * t + 2] = (gz - 2) * 0.5 * size[2];
  }
  m->n_pts = u;
  return 1;
}

static void mesh_measure(const Mesh *m, double *volume, double *area) {
  double v = 0, a = 0;
  for (long t = 0; t < m->n; t++) {
    const double *p = m->v + 9 * t, *q = p + 3, *s = p + 6;
    const double u[3] = {q[0] - p[0], q[1] - p[1], q[2] - p[2]};
    const double w[3] = {s[0] - p[0], s[1] - p[1], s[2] - p[2]};
    const double c[3] = {u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2],
                         u[0] * w[1] - u[1] * w[0]};
    a += 0.5 * sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2]);
    v += (p[0] * (q[1] * s[2] - q[2] * s[1]) - p[1] * (q[0] * s[2] - q[2] * s[0]) +
          p[2] * (q[0] * s[1] - q[1] * s[0])) /
         6.0;
  }
  *volume = fabs(v), *area = a;
}

/* Convex hull of the mesh vertices: its volume, area and vertices (for the diameter).
 * Returns 0 when Qhull cannot build it (a flat or degenerate set). */
static int convex_hull(const Mesh *m, double *volume, double *area, double *diameter) {
  qhT qh_storage, *qh = &qh_storage;
  FILE *quiet = fopen("/dev/null", "w");
  qh_zero(qh, quiet);
  char flags[] = "qhull FA Qt";
  int ok = qh_new_qhull(qh, 3, (int)m->n_pts, m->pts, False, flags, NULL, quiet) == 0;
  if (ok) {
    qh_getarea(qh, qh->facet_list);
    *volume = qh->totvol, *area = qh->totarea;
    /* the largest distance between two points of the set is between two hull vertices */
    const int nv = qh->num_vertices;
    double *hv = malloc(sizeof(double) * 3 * (nv + 1));
    int k = 0;
    vertexT *vertex;
    if (hv) FORALLvertices {
        if (k < nv) memcpy(hv + 3 * k++, vertex->point, sizeof(double) * 3);
      }
    double best = 0;
    for (int a = 0; a < k; a++)
      for (int b = a + 1; b < k; b++) {
        const double dx = hv[3 * a] - hv[3 * b], dy = hv[3 * a + 1] - hv[3 * b + 1],
                     dz = hv[3 * a + 2] - hv[3 * b + 2];
        best = fmax(best, dx * dx + dy * dy + dz * dz);
      }
    *diameter = sqrt(best);
    ok = hv != NULL;
    free(hv);
  }
  int curlong, totlong;
  qh_freeqhull(qh, !qh_ALL);
  qh_memfreeshort(qh, &curlong, &totlong);
  if (quiet) fclose(quiet);
  return ok;
}

/* Eigenvalues (descending) of the covariance of the morphological mask's voxel positions. */
static int pca(const Roi *r, double lambda[3]) {
  double mean[3] = {0, 0, 0}, cov[9] = {0};
  long n = 0;
  for (int z = 0; z < r->nz; z++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++)
        if (r->morph[roi_index(r, x, y, z)])
          mean[0] += x * r->sx, mean[1] += y * r->sy, mean[2] += z * r->sz, n++;
  for (int k = 0; k < 3; k++) mean[k] /= n;
  for (int z = 0; z < r->nz; z++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        if (!r->morph[roi_index(r, x, y, z)]) continue;
        const double d[3] = {x * r->sx - mean[0], y * r->sy - mean[1], z * r->sz - mean[2]};
        for (int a = 0; a < 3; a++) /* the sample covariance, as IBSI's reference values */
          for (int b = 0; b < 3; b++) cov[a * 3 + b] += d[a] * d[b] / (n > 1 ? n - 1 : 1);
      }
  const int three = 3, lwork = 64;
  double w[3], work[64];
  int info;
  dsyev_("N", "U", &three, cov, &three, w, work, &lwork, &info);
  if (info != 0) return 0;
  for (int k = 0; k < 3; k++) lambda[k] = fmax(w[2 - k], 0); /* dsyev: ascending */
  return 1;
}

/* Surface of the ellipsoid with semi-axes a >= b >= c (IBSI's series in Legendre
 * polynomials, 20 terms), written with t_n = (alpha beta)^n P_n(x) so a sphere has no 0/0. */
static double ellipsoid_area(double a, double b, double c) {
  const double alpha = sqrt(fmax(0, 1 - b * b / (a * a))),
               beta = sqrt(fmax(0, 1 - c * c / (a * a)));
  const double s = alpha * beta, u = 0.5 * (alpha * alpha + beta * beta);
  double t_prev = 1, t = u, sum = 1; /* n = 0 term: 1 / (1 - 0) */
  for (int n = 1; n <= 20; n++) {
    sum += t / (1.0 - 4.0 * n * n);
    const double t_next = ((2 * n + 1) * u * t - n * s * s * t_prev) / (n + 1);
    t_prev = t, t = t_next;
  }
  return 4 * M_PI * a * b * sum;
}

/* Moran's I and Geary's C over every pair of intensity-mask voxels, weights 1 / distance. */
/* Moran's I and Geary's C over every pair of intensity-mask voxels, weights 1 / distance. The
 * ROI's voxels are listed once and the weight of each offset tabulated, so the pair loop is
 * multiply-adds. The cost is quadratic: above AUTOCORR_MAX voxels (a CT lesion can have
 * 10^5) they are estimated on every k-th voxel in raster order, AUTOCORR_MAX of them, as
 * IBSI allows for large ROIs. */
#define AUTOCORR_MAX 16384
static void spatial_autocorrelation(const Roi *r, double *moran, double *geary) {
  const long total = (long)r->nx * r->ny * r->nz;
  const int ox = r->nx - 1, oy = r->ny - 1, oz = r->nz - 1;
  const long tx = 2L * ox + 1, ty = 2L * oy + 1, tz = 2L * oz + 1;
  int *at = malloc(sizeof(int) * 3 * (r->n_roi + 1));
  double *v = malloc(sizeof(double) * (r->n_roi + 1)), *w = malloc(sizeof(double) * tx * ty * tz);
  *moran = *geary = NAN;
  if (!at || !v || !w) {
    free(at), free(v), free(w);
    return;
  }
  long n = 0, seen = 0;
  const long stride = (r->n_roi + AUTOCORR_MAX - 1) / AUTOCORR_MAX;
  double mean = 0;
  for (long i = 0; i < total; i++)
    if (r->roi[i] && seen++ % stride == 0) {
      at[3 * n] = (int)(i % r->nx), at[3 * n + 1] = (int)(i / r->nx % r->ny);
      at[3 * n + 2] = (int)(i / r->nx / r->ny), v[n] = r->x[i], mean += r->x[i], n++;
    }
  mean /= n;
  for (long k = 0; k < tz; k++)
    for (long j = 0; j < ty; j++)
      for (long i = 0; i < tx; i++) {
        const double dx = (i - ox) * r->sx, dy = (j - oy) * r->sy, dz = (k - oz) * r->sz;
        w[(k * ty + j) * tx + i] = 1.0 / sqrt(dx * dx + dy * dy + dz * dz);
      }
  double num_i = 0, num_c = 0, weights = 0, var = 0;
  for (long a = 0; a < n; a++) {
    const double da = v[a] - mean;
    var += da * da;
    const int *pa = at + 3 * a;
    for (long b = 0; b < n; b++) {
      if (b == a) continue;
      const int *pb = at + 3 * b;
      const double wab =
          w[((long)(pa[2] - pb[2] + oz) * ty + (pa[1] - pb[1] + oy)) * tx + (pa[0] - pb[0] + ox)];
      weights += wab;
      num_i += wab * da * (v[b] - mean);
      num_c += wab * (v[a] - v[b]) * (v[a] - v[b]);
    }
  }
  *moran = var > 0 && weights > 0 ? n / weights * num_i / var : NAN;
  *geary = var > 0 && weights > 0 ? (n - 1) / (2 * weights) * num_c / var : NAN;
  free(at), free(v), free(w);
}

Status rad_morphology(const Roi *r, RadiomicsFeatures *f, MrError *err) {
  Mesh m = {0};
  if (!build_mesh(r, &m)) {
    free(m.v), free(m.pts), free(m.keys);
    return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory for the mesh");
  }
  double volume, area, hull_volume = NAN, hull_area = NAN, diameter = NAN, lambda[3] = {0};
  mesh_measure(&m, &volume, &area);
  convex_hull(&m, &hull_volume, &hull_area, &diameter);
  pca(r, lambda);
  double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (long p = 0; p < m.n_pts; p++)
    for (int k = 0; k < 3; k++)
      lo[k] = fmin(lo[k], m.pts[3 * p + k]), hi[k] = fmax(hi[k], m.pts[3 * p + k]);
  const double box[3] = {hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]};
  free(m.v), free(m.pts), free(m.keys);
  /* centres of mass: geometric (morphological mask) and intensity-weighted (intensity mask) */
  double geo[3] = {0, 0, 0}, wgt[3] = {0, 0, 0}, mass = 0, mean_x = 0;
  for (int z = 0; z < r->nz; z++)
    for (int y = 0; y < r->ny; y++)
      for (int x = 0; x < r->nx; x++) {
        const long i = roi_index(r, x, y, z);
        const double pos[3] = {x * r->sx, y * r->sy, z * r->sz};
        for (int k = 0; k < 3 && r->morph[i]; k++) geo[k] += pos[k] / r->n_morph;
        for (int k = 0; k < 3 && r->roi[i]; k++) wgt[k] += r->x[i] * pos[k];
        if (r->roi[i]) mass += r->x[i], mean_x += r->x[i];
      }
  mean_x /= r->n_roi;
  double shift = 0;
  for (int k = 0; k < 3; k++) shift += pow(geo[k] - (mass != 0 ? wgt[k] / mass : geo[k]), 2);
  double moran, geary;
  spatial_autocorrelation(r, &moran, &geary);
  const double a = 2 * sqrt(lambda[0]), b = 2 * sqrt(lambda[1]), c = 2 * sqrt(lambda[2]);
  const double sphere = cbrt(36 * M_PI * volume * volume);
  const struct {
    const char *name, *tag;
    double value;
  } rows[] = {
      {"Volume (mesh)", "morph_volume", volume},
      {"Volume (voxel counting)", "morph_vol_approx", r->n_morph * r->sx * r->sy * r->sz},
      {"Surface area (mesh)", "morph_area_mesh", area},
      {"Surface to volume ratio", "morph_av", area / volume},
      {"Compactness 1", "morph_comp_1", volume / (sqrt(M_PI) * pow(area, 1.5))},
      {"Compactness 2", "morph_comp_2", 36 * M_PI * volume * volume / (area * area * area)},
      {"Spherical disproportion", "morph_sph_dispr", area / sphere},
      {"Sphericity", "morph_sphericity", sphere / area},
      {"Asphericity", "morph_asphericity",
       cbrt(area * area * area / (36 * M_PI * volume * volume)) - 1},
      {"Centre of mass shift", "morph_com", sqrt(shift)},
      {"Maximum 3D diameter", "morph_diam", diameter},
      {"Major axis length", "morph_pca_maj_axis", 4 * sqrt(lambda[0])},
      {"Minor axis length", "morph_pca_min_axis", 4 * sqrt(lambda[1])},
      {"Least axis length", "morph_pca_least_axis", 4 * sqrt(lambda[2])},
      {"Elongation", "morph_pca_elongation", lambda[0] > 0 ? sqrt(lambda[1] / lambda[0]) : NAN},
      {"Flatness", "morph_pca_flatness", lambda[0] > 0 ? sqrt(lambda[2] / lambda[0]) : NAN},
      {"Volume density (AABB)", "morph_vol_dens_aabb", volume / (box[0] * box[1] * box[2])},
      {"Area density (AABB)", "morph_area_dens_aabb",
       area / (2 * (box[0] * box[1] + box[0] * box[2] + box[1] * box[2]))},
      /* a one-slice ROI has no third axis: no enclosing ellipsoid volume */
      {"Volume density (AEE)", "morph_vol_dens_aee",
       c > 0 ? volume / (4 * M_PI * a * b * c / 3) : NAN},
      {"Area density (AEE)", "morph_area_dens_aee", area / ellipsoid_area(a, b, c)},
      {"Volume density (convex hull)", "morph_vol_dens_conv_hull", volume / hull_volume},
      {"Area density (convex hull)", "morph_area_dens_conv_hull", area / hull_area},
      {"Integrated intensity", "morph_integ_int", volume * mean_x},
      {"Moran's I index", "morph_moran_i", moran},
      {"Geary's C measure", "morph_geary_c", geary},
  };
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
    if (!rad_add(f, "Morphology", rows[i].name, rows[i].tag, rows[i].value))
      return mr_error_set(err, STATUS_ERR_NOMEM, "radiomics: out of memory");
  return STATUS_OK;
}
