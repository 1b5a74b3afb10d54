/* The DICOM reader (src/data/dicom.cpp, GDCM) on real files: Debian's
 * python3-pydicom test files (skipped with a reason when absent). Every
 * transfer syntax of MR_small decodes to the same pixels; the files pydicom
 * decodes itself match it value for value (pydicom runs when installed);
 * series are assembled by position, not by name, and mixed or unevenly spaced
 * ones are refused; truncated, hostile and crashing files are errors. */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/data.h"
#include "testutil.h"

#define PYDICOM "/usr/lib/python3/dist-packages/pydicom/data/test_files"

static char dir[256];

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "dicom");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

static int have_files(void) {
  struct stat st;
  if (stat(PYDICOM "/MR_small.dcm", &st) == 0) return 1;
  print_message("skipped: no " PYDICOM " (Debian's python3-pydicom ships the test files)\n");
  return 0;
}

static void read_ok(const char *name, DicomVolume *d) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", name[0] == '/' ? "" : PYDICOM, name);
  MrError err = {0};
  if (dicom_read(name[0] == '/' ? name : path, d, &err) != STATUS_OK)
    fail_msg("%s: %s", name, err.msg);
}

static void read_fails(const char *path, const char *needle) {
  DicomVolume d;
  MrError err = {0};
  const Status s = dicom_read(path, &d, &err);
  if (s == STATUS_OK || !strstr(err.msg, needle))
    fail_msg("%s: expected an error with '%s', got %d '%s'", path, needle, s, err.msg);
}

static size_t voxels(const DicomVolume *d) {
  return (size_t)d->v.nx * d->v.ny * d->v.nz * d->channels;
}

/* MR_small in every transfer syntax pydicom ships: explicit and implicit little endian,
 * big endian, RLE, JPEG-LS lossless, JPEG 2000 lossless, padded: the same pixels. */
/* A derived series from compressed and uncompressed sources: every voxel moved by the change
 * asked (integers here: exactly), read back through the same reader; the source untouched;
 * big endian sources refused with a reason. */
static void test_write_derived(void **state) {
  (void)state;
  if (!have_files()) return;
  static const char *const sources[] = {"MR_small.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
                                        "MR_small_jpeg_ls_lossless.dcm",
                                        "MR_small_jp2klossless.dcm"};
  for (size_t k = 0; k < sizeof sources / sizeof *sources; k++) {
    DicomVolume src, back;
    read_ok(sources[k], &src);
    Volume changed = src.v;
    changed.data = malloc(sizeof(float) * voxels(&src));
    for (size_t i = 0; i < voxels(&src); i++) changed.data[i] = src.v.data[i] + (float)(i % 7) - 3;
    char out[400], source[400];
    snprintf(out, sizeof out, "%s/derived%zu", dir, k);
    snprintf(source, sizeof source, "%s/%s", PYDICOM, sources[k]);
    MrError err = {0};
    if (dicom_write_derived(source, &changed, "test", out, &err) != STATUS_OK)
      fail_msg("%s: %s", sources[k], err.msg);
    if (dicom_read(out, &back, &err) != STATUS_OK) fail_msg("%s: %s", sources[k], err.msg);
    assert_int_equal(voxels(&back), voxels(&src));
    for (size_t i = 0; i < voxels(&src); i++)
      if (back.v.data[i] != changed.data[i])
        fail_msg("%s: voxel %zu is %g, %g asked", sources[k], i, back.v.data[i], changed.data[i]);
    free(changed.data);
    dicom_volume_free(&back);
    DicomVolume again; /* the source as it was */
    read_ok(sources[k], &again);
    assert_int_equal(memcmp(again.v.data, src.v.data, sizeof(float) * voxels(&src)), 0);
    dicom_volume_free(&again), dicom_volume_free(&src);
  }
  DicomVolume big;
  read_ok("MR_small_bigendian.dcm", &big);
  char out[400];
  snprintf(out, sizeof out, "%s/derived-big", dir);
  MrError err = {0};
  assert_int_not_equal(
      dicom_write_derived(PYDICOM "/MR_small_bigendian.dcm", &big.v, "test", out, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "big endian"));
  dicom_volume_free(&big);
}

/* Volumes with masks through a manifest (path,label,mask): --slices mask keeps the slices a
 * mask touches, named by their own slice number, with their masks; a manifest without labels
 * is a segmentation set; --spacing resamples each slice in-plane (at the stored spacing:
 * the same pixels; at twice it: 2x2 means); train records both and eval reads the same
 * slices back; an image without a mask under --slices mask is an error naming it. */
static void test_slices_and_spacing(void **state) {
  (void)state;
  char root[400], path[600];
  snprintf(root, sizeof root, "%s/masked", dir);
  mkdir(root, 0700);
  static short voxels[32 * 32 * 6], labels[32 * 32 * 6];
  const short dim[8] = {3, 32, 32, 6, 1, 1, 1, 1};
  const float spacing[4] = {1, 0.7f, 0.7f, 2};
  FILE *list = fopen(strcat(strcpy(path, root), "/list.csv"), "w");
  FILE *seg = fopen(strcat(strcpy(path, root), "/seg.csv"), "w");
  assert_true(list && seg);
  fprintf(list, "path,label,mask\n");
  fprintf(seg, "path,mask\n");
  for (int v = 0; v < 8; v++) {
    const int lesion = v % 2;
    for (int i = 0; i < 32 * 32 * 6; i++) {
      const int x = i % 32, y = i / 32 % 32, z = i / 1024;
      const int inside = z >= 2 && z <= 3 && x >= 10 && x < 20 && y >= 10 && y < 20;
      voxels[i] = (short)(-900 + 37 * ((i * 7 + v) % 11) + (inside && lesion ? 900 : 0));
      labels[i] = (short)(z >= 2 && z <= 3 && x >= 8 && x < 22 && y >= 8 && y < 22);
    }
    snprintf(path, sizeof path, "%s/v%d.nii", root, v);
    write_nifti(path, dim, 4, 16, spacing, voxels, sizeof voxels);
    snprintf(path, sizeof path, "%s/v%d_mask.nii", root, v);
    write_nifti(path, dim, 4, 16, spacing, labels, sizeof labels);
    fprintf(list, "v%d.nii,%s,v%d_mask.nii\n", v, lesion ? "lesion" : "clear", v);
    fprintf(seg, "v%d.nii,v%d_mask.nii\n", v, v);
  }
  fclose(list), fclose(seg);
  DataOptions opt = {.size = 32, .channels = 1, .seed = 1, .fit = FIT_STRETCH};
  window_parse("lung", &opt.window);
  opt.mask_slices = 1;
  MrError err = {0};
  snprintf(path, sizeof path, "%s/list.csv", root);
  DataSplits *d = data_load(path, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_false(d->segment);
  int total = 0;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    const Dataset *ds = &d->split[s];
    total += ds->n;
    assert_non_null(ds->n ? ds->masks : (int *)1);
    for (int i = 0; i < ds->n; i++) {
      const char *z = strrchr(ds->files[i], ':') + 1;
      if (strcmp(z, "3") != 0 && strcmp(z, "4") != 0) fail_msg("slice %s kept", ds->files[i]);
      int in_mask = 0;
      for (int p = 0; p < 32 * 32; p++) in_mask += ds->masks[(size_t)i * 1024 + p];
      assert_int_equal(in_mask, 14 * 14);
    }
  }
  assert_int_equal(total, 8 * 2);
  data_free(d);
  /* the spacing: as stored, the same pixels; at twice it and size 16, the 2x2 means */
  opt.mask_slices = 0;
  DataSplits *plain = data_load(path, &opt, &err);
  opt.spacing = 0.7;
  DataSplits *same = data_load(path, &opt, &err);
  opt.spacing = 1.4, opt.size = 16;
  DataSplits *half = data_load(path, &opt, &err);
  assert_true(plain && same && half);
  const Dataset *a = &plain->split[SPLIT_TRAIN], *b = &same->split[SPLIT_TRAIN],
                *c = &half->split[SPLIT_TRAIN];
  assert_int_equal(memcmp(a->images, b->images, sizeof(float) * (size_t)a->n * 1024), 0);
  for (int i = 0; i < c->n; i++)
    for (int y = 0; y < 16; y++)
      for (int x = 0; x < 16; x++) {
        const float *p = a->images + (size_t)i * 1024;
        const double mean = (p[2 * y * 32 + 2 * x] + p[2 * y * 32 + 2 * x + 1] +
                             p[(2 * y + 1) * 32 + 2 * x] + p[(2 * y + 1) * 32 + 2 * x + 1]) /
                            4;
        assert_true(fabs(c->images[(size_t)i * 256 + y * 16 + x] - mean) < 1e-5);
      }
  data_free(plain), data_free(same), data_free(half);
  /* masks without labels: a segmentation set of every slice */
  snprintf(path, sizeof path, "%s/seg.csv", root);
  opt.spacing = 0, opt.size = 32;
  d = data_load(path, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_true(d->segment && d->n_classes == 2);
  total = 0;
  for (int s = 0; s < SPLIT_COUNT; s++) total += d->split[s].n;
  assert_int_equal(total, 8 * 6);
  data_free(d);
  /* train records both; eval reads the same slices back through the record */
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  char cmd[3000];
  snprintf(cmd, sizeof cmd,
           "%s train --data %s/list.csv --window lung --slices mask --spacing 1.4 --size 28 "
           "--model cnn --depth 1 --base 4 --epochs 1 --quiet --out %s/mm.safetensors > /dev/null "
           "2>&1 && %s eval --model %s/mm.safetensors --data %s/list.csv --attacks fgsm --eps 5HU "
           "--no-noise --no-checks --examples 0 --quiet --out %s/mm > %s/mm.txt 2>&1 && "
           "grep -qa 'slices..:..mask' %s/mm.safetensors && grep -q '(test, 4 images)' "
           "%s/mm.txt",
           bin, root, dir, bin, dir, root, dir, dir, dir, dir);
  if (system(cmd) != 0) {
    snprintf(cmd, sizeof cmd, "cat %s/mm.txt", dir);
    (void)!system(cmd);
    fail_msg("train/eval with --slices mask --spacing 1.4 failed");
  }
  /* --slices mask with an image that has no mask */
  snprintf(path, sizeof path, "%s/nomask.csv", root);
  list = fopen(path, "w");
  fprintf(list, "path,label\nv0.nii,clear\nv1.nii,lesion\n");
  fclose(list);
  opt.mask_slices = 1;
  assert_null(data_load(path, &opt, &err));
  assert_non_null(strstr(err.msg, "needs a mask for every volume"));
}

static void test_transfer_syntaxes_agree(void **state) {
  (void)state;
  if (!have_files()) return;
  static const char *const variants[] = {
      "MR_small_implicit.dcm", "MR_small_bigendian.dcm",        "MR_small_expb.dcm",
      "MR_small_RLE.dcm",      "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
      "MR_small_padded.dcm"};
  DicomVolume ref;
  read_ok("MR_small.dcm", &ref);
  assert_true(ref.v.nx == 64 && ref.v.ny == 64 && ref.v.nz == 1 && ref.channels == 1);
  assert_string_equal(ref.modality, "MR");
  assert_true(fabs(ref.v.sx - 0.3125) < 1e-9);
  for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
    DicomVolume d;
    read_ok(variants[i], &d);
    assert_int_equal(voxels(&d), voxels(&ref));
    if (memcmp(d.v.data, ref.v.data, sizeof(float) * voxels(&ref)))
      fail_msg("%s (%s) decodes to other pixels than MR_small.dcm", variants[i], d.transfer_syntax);
    dicom_volume_free(&d);
  }
  dicom_volume_free(&ref);
  /* JPEG 2000 CT (lossy, 512x512): Hounsfield units through the rescale */
  DicomVolume ct;
  read_ok("693_J2KI.dcm", &ct);
  assert_true(ct.v.nx == 512 && ct.v.ny == 512 && !strcmp(ct.modality, "CT"));
  assert_true(ct.intercept == -1024 || ct.slope != 1); /* a rescale the file carries */
  double lo = 1e9;
  for (size_t i = 0; i < voxels(&ct); i++) lo = fmin(lo, ct.v.data[i]);
  assert_true(lo < -900); /* air, in HU */
  dicom_volume_free(&ct);
  /* multi-frame: 2 RGB frames; 15 dose frames, equal in both byte orders */
  DicomVolume mf, dose, dose_be;
  read_ok("SC_rgb_rle_2frame.dcm", &mf);
  assert_true(mf.v.nz == 2 && mf.channels == 3 && mf.slices == 1);
  read_ok("rtdose.dcm", &dose);
  read_ok("rtdose_expb.dcm", &dose_be);
  assert_int_equal(dose.v.nz, 15);
  assert_memory_equal(dose.v.data, dose_be.v.data, sizeof(float) * voxels(&dose));
  dicom_volume_free(&mf), dicom_volume_free(&dose), dicom_volume_free(&dose_be);
}

/* Each file's pixels as pydicom reports them after the modality LUT (and its colour
 * conversion): count, sum and an index-weighted sum, over (frame, channel, row, column). */
static int pydicom_checksums(const char *const *names, int n, double (*sums)[3]) {
  if (access("/usr/bin/python3", X_OK) != 0) return 0;
  char cmd[4096] =
      "/usr/bin/python3 -c '\n"
      "import sys, numpy as np, pydicom\n"
      "from pydicom.pixel_data_handlers.util import apply_modality_lut, "
      "convert_color_space\n"
      "for f in sys.argv[1:]:\n"
      "  d = pydicom.dcmread(f); a = d.pixel_array\n"
      "  pi = d.PhotometricInterpretation\n"
      "  if pi.startswith(\"YBR\"): a = convert_color_space(a, pi, \"RGB\")\n"
      "  a = apply_modality_lut(a, d).astype(float) if d.SamplesPerPixel == 1 "
      "else a.astype(float)\n"
      "  if d.SamplesPerPixel == 3: a = np.moveaxis(a, -1, -3)\n"
      "  w = (np.arange(a.size) % 7 + 1).reshape(a.shape)\n"
      "  print(a.size, a.sum(), (a * w).sum())\n"
      "' 2>/dev/null";
  for (int i = 0; i < n; i++)
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %s/%s", PYDICOM, names[i]);
  FILE *p = popen(cmd, "r");
  if (!p) return 0;
  int got = 0;
  while (got < n && fscanf(p, "%lf %lf %lf", &sums[got][0], &sums[got][1], &sums[got][2]) == 3)
    got++;
  pclose(p);
  return got == n;
}

#define NIBABEL "/usr/lib/python3/dist-packages/nibabel/tests/data"

/* nibabel's own test volumes (Debian's python3-nibabel): NIfTI-1 and -2, gzipped, 4-D, a
 * reoriented affine. Shape, frames, an index-weighted checksum of the values (scaled; a 4-D
 * file's volumes stacked, which is nibabel's Fortran order) and the affine (sform, else
 * qform) all as nibabel reports them. */
static void test_values_match_nibabel(void **state) {
  (void)state;
  static const char *const names[] = {
      "anatomical.nii", "example4d.nii.gz",          "example_nifti2.nii.gz",
      "functional.nii", "reoriented_anat_moved.nii", "standard.nii.gz"};
  enum { N = sizeof names / sizeof *names };
  char cmd[2000] =
      "/usr/bin/python3 -c '\n"
      "import sys, numpy as np, nibabel as nib\n"
      "for p in sys.argv[1:]:\n"
      "  im = nib.load(p); a = np.asarray(im.dataobj, dtype=np.float64)\n"
      "  s = a.shape + (1,) * (4 - a.ndim); v = a.ravel(order=\"F\")\n"
      "  w = (np.arange(v.size) % 7 + 1)\n"
      "  print(s[0], s[1], s[2] * s[3], s[3], repr(v.sum()), repr((v * w).sum()), "
      "*[repr(x) for x in im.affine[:3].ravel()])\n"
      "' 2>/dev/null";
  for (int i = 0; i < N; i++)
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " " NIBABEL "/%s", names[i]);
  FILE *p = popen(cmd, "r");
  double ref[N][18];
  int got = 0;
  while (p && got < N) {
    int k = 0;
    for (; k < 18 && fscanf(p, "%lf", &ref[got][k]) == 1; k++) {
    }
    if (k < 18) break;
    got++;
  }
  const int rc = p ? pclose(p) : -1;
  if (got < N || rc != 0) {
    print_message("skipped: nibabel (python3-nibabel) does not run here\n");
    return;
  }
  for (int i = 0; i < N; i++) {
    char path[400];
    snprintf(path, sizeof path, NIBABEL "/%s", names[i]);
    Volume v;
    MrError err = {0};
    if (volume_read_nifti(path, &v, &err) != STATUS_OK) fail_msg("%s", err.msg);
    const size_t n = (size_t)v.nx * v.ny * v.nz;
    double sum = 0, weighted = 0;
    for (size_t k = 0; k < n; k++) sum += v.data[k], weighted += v.data[k] * (double)(k % 7 + 1);
    const int frames = v.frames > 1 ? v.frames : 1;
    if (v.nx != ref[i][0] || v.ny != ref[i][1] || v.nz != ref[i][2] || frames != ref[i][3] ||
        fabs(sum - ref[i][4]) > 1e-5 * fmax(1, fabs(ref[i][4])) ||
        fabs(weighted - ref[i][5]) > 1e-5 * fmax(1, fabs(ref[i][5])))
      fail_msg(
          "%s: %dx%dx%d (%d frames), sum %.9g, weighted %.9g; nibabel %gx%gx%g (%g), %.9g, "
          "%.9g",
          names[i], v.nx, v.ny, v.nz, frames, sum, weighted, ref[i][0], ref[i][1], ref[i][2],
          ref[i][3], ref[i][4], ref[i][5]);
    for (int k = 0; k < 12; k++)
      if (fabs((v.has_affine ? v.affine[k] : NAN) - ref[i][6 + k]) > 1e-4)
        fail_msg("%s: affine[%d] %g, nibabel %g", names[i], k, v.affine[k], ref[i][6 + k]);
    volume_free(&v);
  }
}

/* Each file against pydicom's count, sum and weighted sum; 0 when pydicom cannot say. */
static int match_pydicom(const char *const *names, int n) {
  double sums[16][3];
  if (n > 16 || !pydicom_checksums(names, n, sums)) return 0;
  for (int i = 0; i < n; i++) {
    DicomVolume d;
    read_ok(names[i], &d);
    const size_t count = voxels(&d);
    double sum = 0, weighted = 0;
    for (size_t k = 0; k < count; k++)
      sum += d.v.data[k], weighted += d.v.data[k] * (double)(k % 7 + 1);
    if ((double)count != sums[i][0] || fabs(sum - sums[i][1]) > 1e-6 * fmax(1, fabs(sums[i][1])) ||
        fabs(weighted - sums[i][2]) > 1e-6 * fmax(1, fabs(sums[i][2])))
      fail_msg("%s: %zu values, sum %.9g, weighted %.9g; pydicom %.0f, %.9g, %.9g", names[i], count,
               sum, weighted, sums[i][0], sums[i][1], sums[i][2]);
    dicom_volume_free(&d);
  }
  return 1;
}

static void test_values_match_pydicom(void **state) {
  (void)state;
  if (!have_files()) return;
  static const char *const names[] = {"CT_small.dcm",         "MR_small.dcm",
                                      "ExplVR_BigEnd.dcm",    "image_dfl.dcm",
                                      "SC_rgb_rle.dcm",       "SC_rgb_rle_2frame.dcm",
                                      "SC_rgb_small_odd.dcm", "SC_ybr_full_422_uncompressed.dcm"};
  /* JPEG baseline in YBR_FULL and YBR_FULL_422 (GDCM returns them unconverted: they were
   * read 92 grey levels off until the conversion applied to them too); pydicom decodes them
   * through Pillow, so they are a second group that skips alone */
  static const char *const jpeg[] = {"SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm"};
  if (!match_pydicom(names, sizeof names / sizeof *names))
    print_message("skipped: pydicom (with numpy) does not run here\n");
  if (!match_pydicom(jpeg, sizeof jpeg / sizeof *jpeg))
    print_message("skipped: pydicom cannot decode JPEG baseline here (Pillow)\n");
  /* JPEG lossless (process 14): the RLE original exactly */
  DicomVolume lossless, rle;
  read_ok("SC_rgb_jpeg_gdcm.dcm", &lossless);
  read_ok("SC_rgb_rle.dcm", &rle);
  assert_int_equal(voxels(&lossless), voxels(&rle));
  assert_memory_equal(lossless.v.data, rle.v.data, sizeof(float) * voxels(&rle));
  dicom_volume_free(&lossless), dicom_volume_free(&rle);
  /* CT_small in Hounsfield units, as pydicom reads it */
  DicomVolume ct;
  read_ok("CT_small.dcm", &ct);
  assert_string_equal(ct.modality, "CT");
  dicom_volume_free(&ct);
}

/* A series written by pydicom from CT_small: slices at shuffled positions under file names
 * in another order; then one slice from another series, and uneven spacing. */
static void test_series(void **state) {
  (void)state;
  if (!have_files()) return;
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c '\n"
           "import sys, os, copy, pydicom\n"
           "src = pydicom.dcmread(\"" PYDICOM
           "/CT_small.dcm\")\n"
           "def write(folder, zs, uid_of=lambda k: None):\n"
           "  os.makedirs(folder, exist_ok=True)\n"
           "  for k, z in enumerate(zs):\n"
           "    d = copy.deepcopy(src)\n"
           "    d.ImagePositionPatient = [0, 0, z]\n"
           "    d.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]\n"
           "    d.InstanceNumber = k\n"
           "    arr = d.pixel_array.copy(); arr[0, 0] = int(z * 10); d.PixelData = arr.tobytes()\n"
           "    if uid_of(k): d.SeriesInstanceUID = uid_of(k)\n"
           "    d.save_as(os.path.join(folder, \"f%%d.dcm\" %% (len(zs) - k)))\n"
           "write(sys.argv[1] + \"/good\", [5.0, -2.5, 2.5, 0.0, 7.5])\n"
           "write(sys.argv[1] + \"/mixed\", [0.0, 2.5, 5.0], lambda k: \"1.2.3.4\" if k == 1 "
           "else None)\n"
           "write(sys.argv[1] + \"/uneven\", [0.0, 2.5, 6.0])\n"
           "' %s 2>/dev/null",
           dir);
  if (system(cmd) != 0) {
    print_message("skipped: pydicom cannot write the test series here\n");
    return;
  }
  char path[400];
  snprintf(path, sizeof path, "%s/good", dir);
  DicomVolume d;
  read_ok(path, &d);
  assert_true(d.v.nx == 128 && d.v.ny == 128 && d.v.nz == 5 && d.slices == 5);
  assert_true(fabs(d.v.sz - 2.5) < 1e-9);
  /* sorted by position: the marked first pixel rises slice by slice, from z = -2.5 */
  for (int z = 0; z < 5; z++) {
    const float first = d.v.data[(size_t)z * 128 * 128];
    if (fabs(first - (d.slope * (z - 1) * 25.0 + d.intercept)) > 1e-3)
      fail_msg("slice %d starts with %g", z, first);
  }
  assert_true(fabs(d.origin[2] + 2.5) < 1e-9);
  dicom_volume_free(&d);
  snprintf(path, sizeof path, "%s/mixed", dir);
  read_fails(path, "mixed series");
  snprintf(path, sizeof path, "%s/uneven", dir);
  read_fails(path, "inconsistent slice spacing");
}

/* Cut, hostile and crashing files: errors naming the file, never a crash. */
static void test_bad_files(void **state) {
  (void)state;
  if (!have_files()) return;
  read_fails(PYDICOM "/MR_truncated.dcm", "truncated");
  read_fails(PYDICOM "/rtdose_1frame.dcm", "GDCM failed on it"); /* GDCM asserts on it */
  read_fails(PYDICOM "/liver_1frame.dcm", "1 bits stored");
  read_fails(PYDICOM "/rtplan.dcm", "not a readable DICOM image"); /* no pixels */
  read_fails("/nonexistent/x.dcm", "cannot be read");
  char path[400];
  snprintf(path, sizeof path, "%s/empty", dir);
  mkdir(path, 0700);
  read_fails(path, "no files");
  /* CT_small with its pixel data's length field raised past the end of the file */
  FILE *f = fopen(PYDICOM "/CT_small.dcm", "rb");
  assert_non_null(f);
  static unsigned char bytes[1 << 16];
  const size_t n = fread(bytes, 1, sizeof bytes, f);
  fclose(f);
  static const unsigned char tag[] = {0xe0, 0x7f, 0x10, 0x00, 'O', 'W', 0, 0};
  size_t at = 0;
  for (size_t i = 0; i + sizeof tag + 4 <= n; i++)
    if (!memcmp(bytes + i, tag, sizeof tag)) at = i;
  assert_true(at > 0);
  const uint32_t huge = 0xfffffff0u;
  memcpy(bytes + at + 8, &huge, 4);
  snprintf(path, sizeof path, "%s/long.dcm", dir);
  f = fopen(path, "wb");
  fwrite(bytes, 1, n, f);
  fclose(f);
  DicomVolume d;
  MrError err = {0};
  assert_int_not_equal(dicom_read(path, &d, &err), STATUS_OK);
  /* a sequence nested without end: DICM, then sequences of undefined length inside each
   * other until the file ends */
  snprintf(path, sizeof path, "%s/nested.dcm", dir);
  f = fopen(path, "wb");
  static unsigned char head[132] = {0};
  memcpy(head + 128, "DICM", 4);
  fwrite(head, 1, sizeof head, f);
  static const unsigned char seq[] = {0x08, 0x00, 0x15, 0x11, 'S',  'Q',  0,    0,    0xff, 0xff,
                                      0xff, 0xff, 0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff};
  for (int i = 0; i < 100000; i++) fwrite(seq, 1, sizeof seq, f);
  fclose(f);
  assert_int_not_equal(dicom_read(path, &d, &err), STATUS_OK);
  /* random bytes */
  snprintf(path, sizeof path, "%s/noise.dcm", dir);
  f = fopen(path, "wb");
  Rng rng;
  rng_seed(&rng, 3);
  for (int i = 0; i < 5000; i++) fputc((int)(rng_uniform(&rng) * 256), f);
  fclose(f);
  read_fails(path, "not a readable DICOM image");
}

/* A class folder of volumes: DICOM series (pydicom-written from CT_small) and NIfTI files.
 * Each volume gives its axial slices, windowed to [0,1]; all slices of one volume fall in
 * one split; the window is recorded in a trained model and used again from it. */
/* attack --volumes DIR --volume-format FORMAT on the volume folder: each written volume stays
 * within 300 HU of its source voxel by voxel and keeps the source's geometry; predict on the
 * written files gives, slice by slice, the prediction the attack's table says a model reads
 * back from them (volume_pred); some attacks survive. DICOM sources written as derived series
 * carry new UIDs and DERIVED\\SECONDARY (checked with pydicom). */
static void check_written_volumes(const char *bin, const char *root, const char *format) {
  const int dicom_out = !strcmp(format, "dicom");
  char cmd[2400], path[600], line[512];
  FILE *f;
  MrError err = {0};
  snprintf(cmd, sizeof cmd,
           "%s attack --model %s/m.safetensors --data %s --split train --eps 300HU --out "
           "%s/all.npz --volumes %s/back --volume-format %s > %s/attack.txt 2>&1 && grep -q "
           "'attacked volumes in modality units' %s/attack.txt",
           bin, dir, root, dir, dir, format, dir, dir);
  if (system(cmd) != 0) fail_msg("attack --volumes did not run or say so");
  /* never into the data: a usage error before anything is made */
  snprintf(cmd, sizeof cmd,
           "%s attack --model %s/m.safetensors --data %s --eps 300HU --out %s/in.npz --volumes "
           "%s/inside --volume-format %s 2>&1 | grep -q 'is inside the data'",
           bin, dir, root, dir, root, format);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof path, "%s/inside", root);
  assert_int_not_equal(access(path, F_OK), 0);
  snprintf(path, sizeof path, "%s/all.npz.csv", dir);
  f = fopen(path, "r");
  assert_non_null(f);
  char manifest[600];
  snprintf(manifest, sizeof manifest, "%s/back/list.csv", dir);
  FILE *list = fopen(manifest, "w");
  assert_non_null(list);
  fprintf(list, "path\n"); /* unlabelled: predictions only */
  char adv_ids[64][224], adv_preds[64][32], last_volume[96] = "";
  int n_adv = 0, written = 0, changed = 0, flips = 0;
  while (fgets(line, sizeof line, f)) {
    char id[96], truth[32], clean_pred[32], volume_pred[32];
    if (sscanf(line,
               "%*d,%95[^,],%*[^,],%31[^,],%31[^,],%*[^,],%*[^,],%*[^,],%*[^,],%*[^,],%31[^,\n]",
               id, truth, clean_pred, volume_pred) != 4)
      continue;
    char volume_rel[96];
    snprintf(volume_rel, sizeof volume_rel, "%s", id);
    *strrchr(volume_rel, ':') = 0;
    char source[700], back[700];
    snprintf(source, sizeof source, "%s/%s", root, volume_rel);
    const size_t vl = strlen(volume_rel);
    if (vl > 4 && !strcmp(volume_rel + vl - 4, ".nii")) volume_rel[vl - 4] = 0;
    if (vl > 7 && !strcmp(volume_rel + vl - 7, ".nii.gz")) volume_rel[vl - 7] = 0;
    const int is_nifti = strstr(source, ".nii") != NULL, as_dicom = !is_nifti && dicom_out;
    snprintf(back, sizeof back, "%s/back/%s%s", dir, volume_rel, as_dicom ? "" : ".nii.gz");
    if (strcmp(last_volume, volume_rel) != 0) { /* a new volume: its voxels */
      snprintf(last_volume, sizeof last_volume, "%s", volume_rel);
      Volume after;
      DicomVolume before, derived;
      if (as_dicom && dicom_read(back, &derived, &err) == STATUS_OK)
        after = derived.v;
      else if (as_dicom || volume_read_nifti(back, &after, &err) != STATUS_OK)
        fail_msg("%s", err.msg);
      Volume nifti_before;
      if (is_nifti)
        assert_int_equal(volume_read_nifti(source, &nifti_before, &err), STATUS_OK);
      else
        assert_int_equal(dicom_read(source, &before, &err), STATUS_OK);
      const Volume *b = is_nifti ? &nifti_before : &before.v;
      assert_true(after.nx == b->nx && after.ny == b->ny && after.nz == b->nz);
      double most = 0;
      for (size_t i = 0; i < (size_t)b->nx * b->ny * b->nz; i++)
        most = fmax(most, fabs(after.data[i] - b->data[i]));
      if (!(most <= 300 + 1e-3)) fail_msg("%s: changed by up to %g HU", back, most);
      changed += most > 1;
      if (!is_nifti) /* the series' geometry, in RAS */
        for (int k = 0; k < 12; k++) assert_true(fabs(after.affine[k] - b->affine[k]) < 1e-4);
      volume_free(&after);
      if (is_nifti)
        volume_free(&nifti_before);
      else
        dicom_volume_free(&before);
      fprintf(list, "%s%s\n", volume_rel, as_dicom ? "" : ".nii.gz");
      written++;
    }
    if (n_adv < 64) {
      snprintf(adv_ids[n_adv], sizeof adv_ids[n_adv], "%s%s:%s", volume_rel,
               as_dicom ? "" : ".nii.gz", strrchr(id, ':') + 1);
      snprintf(adv_preds[n_adv++], sizeof adv_preds[0], "%s", volume_pred);
      flips += strcmp(volume_pred, clean_pred) != 0;
    }
  }
  fclose(f);
  fclose(list);
  assert_true(written > 1 && changed > 0 && n_adv > 0);
  snprintf(cmd, sizeof cmd,
           "%s predict --model %s/m.safetensors --data %s --split-seed 1 --out %s/back.csv > "
           "/dev/null 2>&1",
           bin, dir, manifest, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof path, "%s/back.csv", dir);
  f = fopen(path, "r");
  assert_non_null(f);
  int matched = 0;
  while (fgets(line, sizeof line, f)) {
    char id[96], pred[32];
    if (sscanf(line, "%95[^,],%*[^,],,%31[^,]", id, pred) != 2) continue;
    for (int i = 0; i < n_adv; i++)
      if (!strcmp(adv_ids[i], id)) {
        if (strcmp(adv_preds[i], pred) != 0)
          fail_msg("%s: the attack's table says %s read back, predict says %s", id, adv_preds[i],
                   pred);
        matched++;
      }
  }
  fclose(f);
  assert_int_equal(matched, n_adv);
  assert_true(flips > 0); /* some attacks survive in the written files */
  if (!dicom_out) return;
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c '\n"
           "import sys, glob, pydicom\n"
           "for folder in glob.glob(sys.argv[1] + \"/nodule/series*/\"):\n"
           "  folder = folder.rstrip(\"/\")\n"
           "  files = [pydicom.dcmread(f) for f in sorted(glob.glob(folder + \"/*.dcm\"))]\n"
           "  src = pydicom.dcmread(sys.argv[2] + folder[len(sys.argv[1]):] + \"/0.dcm\")\n"
           "  assert len(files) == 3 and len({d.SeriesInstanceUID for d in files}) == 1\n"
           "  assert files[0].SeriesInstanceUID != src.SeriesInstanceUID\n"
           "  assert len({d.SOPInstanceUID for d in files}) == 3 and src.SOPInstanceUID not in "
           "{d.SOPInstanceUID for d in files}\n"
           "  for d in files:\n"
           "    assert list(d.ImageType)[:2] == [\"DERIVED\", \"SECONDARY\"]\n"
           "    assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID\n"
           "' %s/back %s",
           dir, root);
  if (system(cmd) != 0) fail_msg("the derived series are not what pydicom expects");
}

static void test_volume_folder(void **state) {
  (void)state;
  if (!have_files()) return;
  char root[400], cmd[2400];
  snprintf(root, sizeof root, "%s/vols", dir);
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 -c '\n"
           "import sys, os, copy, pydicom\n"
           "src = pydicom.dcmread(\"" PYDICOM
           "/CT_small.dcm\")\n"
           "for s in range(6):\n"
           "  folder = os.path.join(sys.argv[1], \"nodule\", \"series%%d\" %% s)\n"
           "  os.makedirs(folder, exist_ok=True)\n"
           "  uid = pydicom.uid.generate_uid()\n"
           "  for k in range(3):\n"
           "    d = copy.deepcopy(src)\n"
           "    d.ImagePositionPatient = [0, 0, 5.0 * k]\n"
           "    d.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]\n"
           "    d.SeriesInstanceUID = uid\n"
           "    d.PatientName = \"Doe^Jane\"; d.PatientID = \"PID-7731942\"\n"
           "    d.PatientBirthDate = \"19470312\"; d.AccessionNumber = \"ACC-5550123\"\n"
           "    arr = d.pixel_array.copy(); arr[0, 0] = s * 7 + k; d.PixelData = arr.tobytes()\n"
           "    d.save_as(os.path.join(folder, \"%%d.dcm\" %% k))\n"
           "' %s 2>/dev/null",
           root);
  if (system(cmd) != 0) {
    print_message("skipped: pydicom cannot write the test series here\n");
    return;
  }
  /* the other class: NIfTI volumes of 4 slices, one of them gzipped */
  char path[600];
  snprintf(path, sizeof path, "%s/clear", root);
  mkdir(path, 0700);
  static short voxels[32 * 32 * 4];
  for (int v = 0; v < 6; v++) {
    for (int i = 0; i < 32 * 32 * 4; i++) voxels[i] = (short)(-1000 + (i * 37 + v * 101) % 1400);
    const short dim[8] = {3, 32, 32, 4, 1, 1, 1, 1};
    const float spacing[4] = {1, 0.7f, 0.7f, 2};
    snprintf(path, sizeof path, "%s/clear/v%d.nii", root, v);
    write_nifti(path, dim, 4, 16, spacing, voxels, sizeof voxels);
  }
  snprintf(cmd, sizeof cmd, "gzip %s/clear/v0.nii", root);
  assert_int_equal(system(cmd), 0);
  DataOptions opt = {.size = 32, .channels = 1, .seed = 1, .fit = FIT_STRETCH};
  assert_true(window_parse("lung", &opt.window));
  MrError err = {0};
  DataSplits *d = data_load(root, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->volumes, 12);
  assert_int_equal(d->n_classes, 2);
  int total = 0;
  for (int s = 0; s < SPLIT_COUNT; s++) total += d->split[s].n;
  assert_int_equal(total, 6 * 3 + 6 * 4);
  /* every slice of a volume in the same split, named REL:Z */
  for (int s = 0; s < SPLIT_COUNT; s++)
    for (int i = 0; i < d->split[s].n; i++) {
      const char *id = d->split[s].files[i], *colon = strrchr(id, ':');
      assert_non_null(colon);
      for (int t = 0; t < SPLIT_COUNT; t++)
        for (int j = 0; t != s && j < d->split[t].n; j++)
          if (!strncmp(d->split[t].files[j], id, (size_t)(colon - id + 1)))
            fail_msg("%s in split %d and %s in split %d", id, s, d->split[t].files[j], t);
      for (size_t p = 0; p < 32 * 32; p++) {
        const float x = d->split[s].images[(size_t)i * 32 * 32 + p];
        assert_true(x >= 0 && x <= 1);
      }
    }
  /* the lung window: -1350 HU and below is 0, 150 HU and above is 1 */
  DicomVolume ct;
  read_ok("CT_small.dcm", &ct);
  /* its geometry in NIfTI's RAS: pydicom's Image Position Patient (-158.135803, -179.035797,
   * -75.699997) and Pixel Spacing 0.661468, with x and y negated */
  assert_true(ct.v.has_affine);
  assert_true(fabs(ct.v.affine[0] + 0.661468) < 1e-5 && fabs(ct.v.affine[3] - 158.135803) < 1e-4);
  assert_true(fabs(ct.v.affine[5] + 0.661468) < 1e-5 && fabs(ct.v.affine[7] - 179.035797) < 1e-4);
  assert_true(fabs(ct.v.affine[11] + 75.699997) < 1e-4);
  IntensityWindow lung;
  window_parse("lung", &lung);
  assert_true(window_apply(&lung, -1350) == 0 && window_apply(&lung, 150) == 1);
  assert_true(fabs(window_apply(&lung, -600) - 0.5) < 1e-6);
  dicom_volume_free(&ct);
  data_free(d);
  /* a CSV manifest naming a series folder, a NIfTI file and a single DICOM file */
  FILE *f;
  snprintf(path, sizeof path, "%s/list.csv", root);
  f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f,
          "path,label,split\nnodule/series0,nodule,train\nclear/v1.nii,clear,train\n"
          "nodule/series1/0.dcm,nodule,test\nclear/v2.nii,clear,test\n");
  fclose(f);
  d = data_load(path, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->split[SPLIT_TRAIN].n, 3 + 4);
  assert_int_equal(d->split[SPLIT_TEST].n, 1 + 4);
  assert_int_equal(d->volumes, 4);
  data_free(d);
  f = fopen(path, "w");
  fprintf(f, "path,label\nnodule/nothing,nodule\nclear/v1.nii,clear\n");
  fclose(f);
  snprintf(cmd, sizeof cmd, "%s/nodule/nothing", root);
  mkdir(cmd, 0700);
  assert_null(data_load(path, &opt, &err));
  assert_non_null(strstr(err.msg, "nothing"));
  /* train records the window; eval on the same folder takes it from the model */
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  snprintf(cmd, sizeof cmd,
           "%s train --data %s --window lung --size 32 --model cnn --depth 1 --base 8 --epochs 4 "
           "--lr 0.05 "
           "--quiet --out %s/m.safetensors > %s/train.txt 2>&1 && "
           "%s eval --model %s/m.safetensors --data %s --attacks fgsm --eps 2HU --no-noise "
           "--no-checks --examples 0 --quiet --out %s/ev > %s/eval.txt 2>&1",
           bin, root, dir, dir, bin, dir, root, dir, dir);
  const int rc = system(cmd);
  snprintf(path, sizeof path, "%s/train.txt", dir);
  f = fopen(path, "r");
  char text[4096] = "";
  if (f) text[fread(text, 1, sizeof text - 1, f)] = 0, fclose(f);
  if (rc != 0 || !strstr(text, "window lung")) fail_msg("train/eval failed (%d): %s", rc, text);
  snprintf(path, sizeof path, "%s/ev/results.json", dir);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  /* the window came back from the model's record: eval's results carry it, and 2 HU is
   * 2/1500 of the [0,1] range */
  cJSON *results = NULL;
  f = fopen(path, "r");
  static char json[1 << 20];
  if (f) json[fread(json, 1, sizeof json - 1, f)] = 0, fclose(f);
  results = cJSON_Parse(json);
  const cJSON *w = cJSON_GetObjectItem(results, "window");
  assert_int_equal(cJSON_GetArraySize(w), 2);
  assert_true(cJSON_GetArrayItem(w, 1)->valuedouble == 1500);
  assert_non_null(strstr(json, "0.00133333"));
  /* per volume: the test split's volumes, clean and under the attack */
  const int test_volumes = cJSON_GetObjectItem(results, "volumes")
                               ? cJSON_GetObjectItem(results, "volumes")->valueint
                               : 0;
  assert_true(test_volumes > 0 && test_volumes < 12);
  const double clean_volume_acc =
      cJSON_GetObjectItem(results, "clean_volume_accuracy")->valuedouble;
  const cJSON *row0 = cJSON_GetArrayItem(cJSON_GetObjectItem(results, "rows"), 0);
  const double volume_acc = cJSON_GetObjectItem(row0, "volume_accuracy")->valuedouble;
  assert_true(volume_acc >= 0 && volume_acc <= 1);
  cJSON_Delete(results);
  snprintf(cmd, sizeof cmd, "grep -q 'HU' %s/ev/report.html", dir);
  assert_int_equal(system(cmd), 0);
  /* and the console table: eps in both units */
  snprintf(cmd, sizeof cmd,
           "grep -q 'HU: eps in modality units through the window lung' %s/eval.txt", dir);
  assert_int_equal(system(cmd), 0);
  /* predictions per slice and per volume (the mean of its slices' probabilities) */
  snprintf(cmd, sizeof cmd,
           "%s predict --model %s/m.safetensors --data %s --split train --out %s/p.csv > "
           "%s/predict.txt 2>&1 && grep -q 'volume accuracy' %s/predict.txt",
           bin, dir, root, dir, dir, dir);
  if (system(cmd) != 0) fail_msg("predict gave no volume predictions");
  snprintf(path, sizeof path, "%s/p.volumes.csv", dir);
  f = fopen(path, "r");
  assert_non_null(f);
  int rows = 0, slices = 0, n_slices;
  char line[512];
  while (fgets(line, sizeof line, f))
    if (rows++ && sscanf(strchr(strchr(line, ',') + 1, ',') + 1, "%d", &n_slices) == 1) {
      if (n_slices != 3 && n_slices != 4) fail_msg("a volume of %d slices: %s", n_slices, line);
      slices += n_slices;
    }
  fclose(f);
  assert_true(rows > 1 && slices > 0);
  /* eval's clean volume accuracy is predict's on the same split */
  snprintf(cmd, sizeof cmd,
           "%s predict --model %s/m.safetensors --data %s --out %s/pt.csv > %s/predict.txt 2>&1",
           bin, dir, root, dir, dir);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof path, "%s/predict.txt", dir);
  f = fopen(path, "r");
  text[fread(text, 1, sizeof text - 1, f)] = 0, fclose(f);
  const char *acc_text = strstr(text, "volume accuracy ");
  assert_non_null(acc_text);
  assert_true(fabs(atof(acc_text + 16) - 100 * clean_volume_acc) < 0.01);
  /* a single attack at 5 HU */
  snprintf(cmd, sizeof cmd,
           "%s attack --model %s/m.safetensors --data %s --eps 5HU --limit 4 --out %s/adv.npz > "
           "%s/attack.txt 2>&1 && grep -q 'eps 0.003333 (5 HU)' %s/attack.txt",
           bin, dir, root, dir, dir, dir);
  if (system(cmd) != 0) fail_msg("attack --eps 5HU did not run or say so");
  check_written_volumes(bin, root, "nifti");
  check_written_volumes(bin, root, "dicom");
  /* triage through the same window; then no output names the patient */
  snprintf(cmd, sizeof cmd,
           "%s triage --model %s/m.safetensors --data %s --eps-max 20HU --quiet --out %s/tr > "
           "%s/triage.txt 2>&1",
           bin, dir, root, dir, dir);
  if (system(cmd) != 0) {
    snprintf(path, sizeof path, "%s/triage.txt", dir);
    f = fopen(path, "r");
    if (f) text[fread(text, 1, sizeof text - 1, f)] = 0, fclose(f);
    fail_msg("triage failed: %s", text);
  }
  snprintf(cmd, sizeof cmd, "grep -q ' HU)' %s/triage.txt", dir);
  if (system(cmd) != 0) {
    snprintf(path, sizeof path, "%s/triage.txt", dir);
    f = fopen(path, "r");
    if (f) text[fread(text, 1, sizeof text - 1, f)] = 0, fclose(f);
    fail_msg("triage does not show eps in HU: %s",
             strstr(text, "most fragile:") ? strstr(text, "most fragile:") : text);
  }
  /* per volume triage: every test volume, most fragile first */
  snprintf(path, sizeof path, "%s/tr/triage.json", dir);
  f = fopen(path, "r");
  assert_non_null(f);
  json[fread(json, 1, sizeof json - 1, f)] = 0, fclose(f);
  results = cJSON_Parse(json);
  /* every image has a hashed id, 16 hex digits, unique, beside its path */
  const cJSON *images = cJSON_GetObjectItem(results, "images"), *image;
  char seen[64][17];
  int n_seen = 0;
  cJSON_ArrayForEach(image, images) {
    const char *hash = cJSON_GetObjectItem(image, "id")->valuestring;
    assert_int_equal(strlen(hash), 16);
    assert_int_equal(strspn(hash, "0123456789abcdef"), 16);
    for (int j = 0; j < n_seen; j++) assert_string_not_equal(seen[j], hash);
    if (n_seen < 64) snprintf(seen[n_seen++], sizeof seen[0], "%s", hash);
  }
  assert_true(n_seen > 1);
  const cJSON *vols = cJSON_GetObjectItem(results, "volumes"), *vol;
  assert_int_equal(cJSON_GetArraySize(vols), test_volumes);
  double last = 0;
  cJSON_ArrayForEach(vol, vols) {
    const cJSON *e = cJSON_GetObjectItem(vol, "min_eps");
    const double eps = cJSON_IsNumber(e) ? e->valuedouble : INFINITY;
    assert_true(eps >= last);
    last = eps;
    assert_non_null(strstr(cJSON_GetObjectItem(vol, "volume")->valuestring, "/"));
    assert_null(strchr(cJSON_GetObjectItem(vol, "volume")->valuestring, ':'));
  }
  cJSON_Delete(results);
  snprintf(cmd, sizeof cmd, "grep -q 'Most fragile volumes' %s/tr/report.html", dir);
  assert_int_equal(system(cmd), 0);
  static const char *const identifiers[] = {"Doe", "Jane", "PID-7731942", "19470312",
                                            "ACC-5550123"};
  for (size_t i = 0; i < sizeof identifiers / sizeof *identifiers; i++) {
    snprintf(cmd, sizeof cmd, "grep -rl '%s' %s/ev %s/tr %s/train.txt %s/eval.txt", identifiers[i],
             dir, dir, dir, dir);
    if (system(cmd) == 0) fail_msg("an output names the patient: %s", identifiers[i]);
  }
  /* a bad window is a usage error */
  snprintf(cmd, sizeof cmd, "%s train --data %s --window 5 --out %s/x.safetensors > /dev/null 2>&1",
           bin, root, dir);
  const int bad = system(cmd);
  assert_int_equal(WEXITSTATUS(bad), 2);
}

/* A segmentation folder of NIfTI volumes and label volumes (images/ID, masks/ID): every
 * slice gets its mask; a label that is not an integer id, or a mask on another grid, is an
 * error naming the file. */
static void test_nifti_segmentation(void **state) {
  (void)state;
  char root[400], path[600];
  snprintf(root, sizeof root, "%s/seg", dir);
  for (int k = 0; k < 2; k++) {
    snprintf(path, sizeof path, "%s/%s", root, k ? "masks" : "images");
    mkdir(root, 0700), mkdir(path, 0700);
  }
  /* told apart by their bytes: DICOM's preamble, NIfTI-1 in either byte order */
  static unsigned char head[352];
  memset(head, 0, sizeof head);
  memcpy(head + 128, "DICM", 4);
  assert_int_equal(image_kind(head, sizeof head), IMAGE_DICOM);
  memset(head, 0, sizeof head);
  memcpy(head + 344, "n+1", 4);
  const int32_t size_le = 348, size_be = 0x5c010000;
  memcpy(head, &size_le, 4);
  assert_int_equal(image_kind(head, sizeof head), IMAGE_NIFTI);
  memcpy(head, &size_be, 4);
  assert_int_equal(image_kind(head, sizeof head), IMAGE_NIFTI);
  memcpy(head + 344, "xyz", 4);
  assert_int_equal(image_kind(head, sizeof head), IMAGE_NONE);
  enum { N = 24, Z = 3 };
  static short image[N * N * Z];
  static float labels[N * N * Z];
  const short dim[8] = {3, N, N, Z, 1, 1, 1, 1};
  const float spacing[4] = {1, 1, 1, 3};
  for (int c = 0; c < 10; c++) {
    for (int z = 0; z < Z; z++)
      for (int y = 0; y < N; y++)
        for (int x = 0; x < N; x++) {
          const int in = (x - 12) * (x - 12) + (y - 12) * (y - 12) < 25 + 10 * z + c;
          image[(z * N + y) * N + x] = (short)(in ? 40 + c : -900 + x);
          labels[(z * N + y) * N + x] = (float)in;
        }
    snprintf(path, sizeof path, "%s/images/case%d.nii", root, c);
    write_nifti(path, dim, 4, 16, spacing, image, sizeof image);
    snprintf(path, sizeof path, "%s/masks/case%d.nii", root, c);
    write_nifti(path, dim, 16, 32, spacing, labels, sizeof labels);
  }
  DataOptions opt = {.size = N, .channels = 1, .seed = 1, .fit = FIT_STRETCH};
  window_parse("abdomen", &opt.window);
  MrError err = {0};
  DataSplits *d = data_load(root, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_true(d->segment && d->volumes == 10 && d->n_classes == 2);
  int slices = 0, lesion = 0;
  for (int s = 0; s < SPLIT_COUNT; s++) {
    slices += d->split[s].n;
    for (size_t i = 0; i < (size_t)d->split[s].n * N * N; i++) {
      assert_true(d->split[s].masks[i] == 0 || d->split[s].masks[i] == 1);
      lesion += d->split[s].masks[i];
      /* the lesion is 40 HU (inside the abdomen window), the rest below it */
      if (d->split[s].masks[i]) assert_true(d->split[s].images[i] >= 0.5f);
    }
  }
  assert_int_equal(slices, 10 * Z);
  assert_true(lesion > 10 * Z * 60);
  data_free(d);
  /* a label that is not an id */
  labels[5] = 2.5f;
  snprintf(path, sizeof path, "%s/masks/case3.nii", root);
  write_nifti(path, dim, 16, 32, spacing, labels, sizeof labels);
  assert_null(data_load(root, &opt, &err));
  assert_non_null(strstr(err.msg, "case3.nii: voxel 5 of slice 1 is 2.5"));
  /* a mask on another grid */
  const short small[8] = {3, N, N, 2, 1, 1, 1, 1};
  write_nifti(path, small, 16, 32, spacing, labels, sizeof(float) * N * N * 2);
  assert_null(data_load(root, &opt, &err));
  assert_non_null(strstr(err.msg, "is 24x24x2 but its image"));
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_transfer_syntaxes_agree),
                                     cmocka_unit_test(test_write_derived),
                                     cmocka_unit_test(test_slices_and_spacing),
                                     cmocka_unit_test(test_values_match_pydicom),
                                     cmocka_unit_test(test_values_match_nibabel),
                                     cmocka_unit_test(test_series),
                                     cmocka_unit_test(test_bad_files),
                                     cmocka_unit_test(test_volume_folder),
                                     cmocka_unit_test(test_nifti_segmentation)};
  return cmocka_run_group_tests(tests, setup, teardown);
}
