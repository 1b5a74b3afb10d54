/* Radiomics against the IBSI-1 reference values: every feature of the
 * digital phantom (../shared/data/ibsi_phantom/, read with the NIfTI reader)
 * must lie within the table's tolerance, or, where the table gives 0, round
 * to its three significant digits. Rows without a reference value are listed
 * and skipped. Also the NIfTI reader on malformed files. */
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define PHANTOM_DIR "../shared/data/ibsi_phantom"

static char dir[256];

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "radiomics");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

/* the next comma-separated field of *line (double quotes allowed) into out */
static void csv_field(char **line, char *out, size_t cap) {
  char *p = *line;
  size_t n = 0;
  int quoted = *p == '"';
  if (quoted) p++;
  while (*p && (quoted ? *p != '"' : *p != ',' && *p != '\n')) {
    if (n + 1 < cap) out[n++] = *p;
    p++;
  }
  out[n] = 0;
  if (quoted && *p == '"') p++;
  if (*p == ',') p++;
  *line = p;
}

/* Within tolerance; a tolerance of 0 means "to the three significant digits shown". */
static int matches(double value, double ref, double tol) {
  if (tol == 0) tol = ref == 0 ? 5e-4 : 0.5 * pow(10, floor(log10(fabs(ref))) - 2);
  return fabs(value - ref) <= tol * (1 + 1e-9);
}

static void test_ibsi_digital_phantom(void **state) {
  (void)state;
  char path[300];
  snprintf(path, sizeof path, "%s/phantom.nii.gz", PHANTOM_DIR);
  if (access(path, R_OK) != 0) {
    print_message("  skipped: %s is absent (the shared data sets)\n", PHANTOM_DIR);
    return;
  }
  MrError err = {0};
  Volume image, mask;
  assert_int_equal(volume_read_nifti(path, &image, &err), STATUS_OK);
  snprintf(path, sizeof path, "%s/mask.nii.gz", PHANTOM_DIR);
  assert_int_equal(volume_read_nifti(path, &mask, &err), STATUS_OK);
  assert_int_equal(image.nx, 5), assert_int_equal(image.ny, 4), assert_int_equal(image.nz, 4);
  assert_true(image.sx == 2.0 && image.sz == 2.0);
  RadiomicsOptions o = radiomics_options_default();
  o.binning = RAD_BIN_NONE; /* the phantom's grey levels are its bins */
  RadiomicsFeatures f;
  if (radiomics_extract(&image, &mask, &o, &f, &err) != STATUS_OK) fail_msg("%s", err.msg);
  snprintf(path, sizeof path, "%s/ibsi_1_reference_values_digital_phantom.csv", PHANTOM_DIR);
  FILE *csv = fopen(path, "r");
  assert_non_null(csv);
  char line[1024];
  assert_non_null(fgets(line, sizeof line, csv)); /* header */
  int checked = 0, failed = 0, no_reference = 0;
  while (fgets(line, sizeof line, csv)) {
    char *p = line, dataset[64], family[96], name[96], ref_text[32], tol_text[32], tag[64];
    csv_field(&p, dataset, sizeof dataset), csv_field(&p, family, sizeof family);
    csv_field(&p, name, sizeof name), csv_field(&p, ref_text, sizeof ref_text);
    csv_field(&p, tol_text, sizeof tol_text), csv_field(&p, tag, sizeof tag);
    const RadiomicsFeature *got = radiomics_find(&f, tag);
    if (!ref_text[0]) {
      no_reference++;
      continue;
    }
    checked++;
    const double ref = atof(ref_text), tol = atof(tol_text);
    if (!got || !matches(got->value, ref, tol)) {
      failed++;
      print_message("  MISMATCH %-34s %-28s ref %s +- %s, got %.6g\n", tag, family, ref_text,
                    tol_text, got ? got->value : NAN);
    } else if (strcmp(got->family, family) != 0 || strcmp(got->name, name) != 0) {
      failed++;
      print_message("  NAMED %s as '%s' / '%s', IBSI '%s' / '%s'\n", tag, got->family, got->name,
                    family, name);
    }
  }
  fclose(csv);
  print_message(
      "  IBSI-1 digital phantom: %d of %d reference values matched (%d rows have no "
      "reference value)\n",
      checked - failed, checked, no_reference);
  assert_int_equal(failed, 0);
  assert_true(checked >= 480);
  radiomics_features_free(&f);
  volume_free(&image), volume_free(&mask);
}

static void expect_nifti_error(const char *path, const char *needle) {
  Volume v;
  MrError err = {0};
  const Status s = volume_read_nifti(path, &v, &err);
  if (s == STATUS_OK || !strstr(err.msg, needle))
    fail_msg("%s: expected an error with '%s', got %d '%s'", path, needle, s, err.msg);
}

static void test_nifti_reader(void **state) {
  (void)state;
  char path[320];
  snprintf(path, sizeof path, "%s/v.nii", dir);
  const short d3[8] = {3, 3, 2, 1, 1, 1, 1, 1};
  const float spacing[4] = {1, 0.5f, 0.7f, 2.5f};
  const short voxels[6] = {1, -2, 3, 400, 5, 6};
  write_nifti(path, d3, 4 /* int16 */, 16, spacing, voxels, sizeof voxels);
  Volume v;
  MrError err = {0};
  assert_int_equal(volume_read_nifti(path, &v, &err), STATUS_OK);
  assert_int_equal(v.nx, 3), assert_int_equal(v.ny, 2), assert_int_equal(v.nz, 1);
  assert_true(v.sx == 0.5 && fabs(v.sy - 0.7) < 1e-6 && v.sz == 2.5);
  assert_true(v.data[1] == -2.0f && v.data[3] == 400.0f);
  volume_free(&v);
  /* the voxels must be in the file: a header declaring 10^6 of them over 12 bytes */
  const short big[8] = {3, 100, 100, 100, 1, 1, 1, 1};
  write_nifti(path, big, 4, 16, spacing, voxels, sizeof voxels);
  expect_nifti_error(path, "declares 2000000 bytes of voxels");
  const short hostile[8] = {3, 32000, 32000, 32000, 1, 1, 1, 1};
  write_nifti(path, hostile, 4, 16, spacing, voxels, sizeof voxels);
  expect_nifti_error(path, "over the");
  /* 4-D: its 3 volumes stacked along z; 5-D refused */
  const short four[8] = {4, 3, 2, 1, 3, 1, 1, 1};
  short frames[18];
  for (int i = 0; i < 18; i++) frames[i] = (short)(10 * i);
  write_nifti(path, four, 4, 16, spacing, frames, sizeof frames);
  assert_int_equal(volume_read_nifti(path, &v, &err), STATUS_OK);
  assert_true(v.nx == 3 && v.ny == 2 && v.nz == 3 && v.frames == 3);
  assert_true(v.data[6] == 60.0f && v.data[17] == 170.0f);
  RadiomicsFeatures rf;
  assert_int_not_equal(radiomics_extract(&v, NULL, &(RadiomicsOptions){0}, &rf, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "4-D volume of 3 frames"));
  volume_free(&v);
  const short five[8] = {5, 3, 2, 1, 1, 3, 1, 1};
  write_nifti(path, five, 4, 16, spacing, frames, sizeof frames);
  expect_nifti_error(path, "3 values along dimension 5");
  write_nifti(path, d3, 32 /* complex64 */, 64, spacing, voxels, sizeof voxels);
  expect_nifti_error(path, "is not an integer or float scalar");
  const float unknown[4] = {1, NAN, 1, 1};
  write_nifti(path, d3, 4, 16, unknown, voxels, sizeof voxels);
  expect_nifti_error(path, "voxel size along axis 1 is nan mm");
  const float denormal[4] = {1, 1e-40f, 1, 1};
  write_nifti(path, d3, 4, 16, denormal, voxels, sizeof voxels);
  expect_nifti_error(path, "voxel size along axis 1 is 9.99995e-41 mm");
  /* a 1-D file: the axes it lacks are one voxel of 1 mm, whatever their size fields hold
   * (the fuzzer's NaN there sent the mesh's triangulation into an endless loop) */
  const short d1[8] = {1, 6, 1, 1, 1, 1, 1, 1};
  const float stray[4] = {1, 0.5f, NAN, -INFINITY};
  write_nifti(path, d1, 4, 16, stray, voxels, sizeof voxels);
  assert_int_equal(volume_read_nifti(path, &v, &err), STATUS_OK);
  assert_true(v.nx == 6 && v.sx == 0.5 && v.sy == 1 && v.sz == 1);
  volume_free(&v);
  const float values[6] = {0, 1, NAN, 3, 4, 5};
  /* libnifti replaces non-finite float voxels by 0 as it loads them (its behaviour, pinned) */
  write_nifti(path, d3, 16 /* float32 */, 32, spacing, values, sizeof values);
  assert_int_equal(volume_read_nifti(path, &v, &err), STATUS_OK);
  assert_true(v.data[2] == 0.0f && v.data[3] == 3.0f);
  volume_free(&v);
  FILE *f = fopen(path, "w");
  fputs("this is not a NIfTI file, although it is long enough to hold a header......", f);
  fclose(f);
  expect_nifti_error(path, "not a readable NIfTI file");
  expect_nifti_error("/nonexistent/v.nii", "not a readable NIfTI file");
  /* gzip streams cut short, in the header and in the voxels (64 KiB of varied values); and
   * both spellings present, where libnifti would read w.nii for w.nii.gz */
  char cmd[2000], gz[330], plain[330];
  snprintf(plain, sizeof plain, "%s/w.nii", dir);
  snprintf(gz, sizeof gz, "%s/w.nii.gz", dir);
  short *noise = malloc(sizeof(short) * 64 * 64 * 8);
  for (int i = 0; i < 64 * 64 * 8; i++) noise[i] = (short)((i * 7919) % 2003 - 1000);
  const short d_big[8] = {3, 64, 64, 8, 1, 1, 1, 1};
  write_nifti(plain, d_big, 4, 16, spacing, noise, sizeof(short) * 64 * 64 * 8);
  free(noise);
  snprintf(cmd, sizeof cmd, "gzip -c %s > %s", plain, gz);
  assert_int_equal(system(cmd), 0);
  expect_nifti_error(gz, "w.nii is beside it and libnifti may read either");
  static const struct {
    int keep;
    const char *needle;
  } cuts[] = {{40, "not a readable NIfTI file"}, {3000, "its voxels cannot be read (truncated?)"}};
  for (int c = 0; c < 2; c++) {
    snprintf(cmd, sizeof cmd, "gzip -c %s | head -c %d > %s.cut && mv %s.cut %s", plain,
             cuts[c].keep, gz, gz, gz);
    assert_int_equal(system(cmd), 0);
    rename(plain, path); /* out of the way while the cut file is read */
    expect_nifti_error(gz, cuts[c].needle);
    rename(path, plain);
  }
}

/* A 2-D image (one slice) and a whole-image ROI work, and binning by count or width gives
 * the levels it says. */
static void test_two_dimensional_roi(void **state) {
  (void)state;
  float pixels[16 * 12];
  for (int i = 0; i < 16 * 12; i++) pixels[i] = (float)((i * 37) % 101) / 100.0f;
  Volume image = {.nx = 16, .ny = 12, .nz = 1, .sx = 1, .sy = 1, .sz = 1, .data = pixels};
  RadiomicsOptions o = radiomics_options_default();
  RadiomicsFeatures f;
  MrError err = {0};
  assert_int_equal(radiomics_extract(&image, NULL, &o, &f, &err), STATUS_OK);
  assert_true(f.n > 400);
  const RadiomicsFeature *mx = radiomics_find(&f, "ih_max"),
                         *v = radiomics_find(&f, "morph_vol_approx");
  assert_non_null(mx), assert_non_null(v);
  assert_true(mx->value == 32.0); /* the maximum lands in the last of 32 bins */
  assert_true(v->value == 16 * 12);
  for (int i = 0; i < f.n; i++)
    if (isinf(f.items[i].value)) fail_msg("%s is infinite", f.items[i].tag);
  radiomics_features_free(&f);
  o.binning = RAD_BIN_WIDTH, o.bin_width = 0.25, o.bin_min = 0;
  assert_int_equal(radiomics_extract(&image, NULL, &o, &f, &err), STATUS_OK);
  assert_true(radiomics_find(&f, "ih_max")->value == 5.0); /* 1.0 opens bin 5: [1, 1.25) */
  radiomics_features_free(&f);
  o.binning = RAD_BIN_NONE;
  assert_int_not_equal(radiomics_extract(&image, NULL, &o, &f, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "must be integers from 1"));
  float zeros[16 * 12] = {0};
  Volume empty = {.nx = 16, .ny = 12, .nz = 1, .sx = 1, .sy = 1, .sz = 1, .data = zeros};
  assert_int_not_equal(radiomics_extract(&image, &empty, &o, &f, &err), STATUS_OK);
  assert_non_null(strstr(err.msg, "region of interest is empty"));
  /* voxel sizes no scanner makes, from whatever source, are refused before any geometry */
  o.binning = RAD_BIN_COUNT;
  const float bad_sizes[] = {NAN, 0, -1, 1e-40f, 1e7f, INFINITY};
  for (int b = 0; b < 6; b++) {
    Volume odd = image;
    odd.sy = bad_sizes[b];
    if (radiomics_extract(&odd, NULL, &o, &f, &err) == STATUS_OK)
      fail_msg("voxel size %g was accepted", (double)bad_sizes[b]);
    assert_non_null(strstr(err.msg, "voxel size along axis 2"));
  }
}

/* `medrobust ARGS` (@ is the test folder); its exit code, output in dir/out.txt */
static int cli(const char *args, char *out, size_t cap) {
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  char expanded[1500], cmd[2200], path[300];
  size_t n = 0;
  for (const char *c = args; *c && n < sizeof expanded - 300; c++)
    n += *c == '@' ? (size_t)snprintf(expanded + n, sizeof expanded - n, "%s", dir)
                   : (expanded[n] = *c, 1);
  expanded[n] = 0;
  snprintf(path, sizeof path, "%s/out.txt", dir);
  snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", bin, expanded, path);
  const int status = system(cmd);
  FILE *f = fopen(path, "r");
  const size_t got = f ? fread(out, 1, cap - 1, f) : 0;
  out[got] = 0;
  if (f) fclose(f);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* radiomics extract end to end: the phantom's CSV row holds the validated values; a data
 * set gives a row per image with a lesion; bad arguments are usage errors. */
static void test_extract_command(void **state) {
  (void)state;
  char out[8192], args[1024];
  assert_int_equal(cli("data phantom --task segment --n 100 --out @/seg.npz", out, sizeof out), 0);
  assert_int_equal(cli("radiomics extract --data @/seg.npz --out @/f.csv --quiet", out, sizeof out),
                   0);
  assert_non_null(strstr(out, "20 images, 483 features each"));
  char path[300];
  snprintf(path, sizeof path, "%s/f.csv", dir);
  char *csv = read_text(path);
  assert_non_null(strstr(csv, "# discretisation: fixed bin number 32\n"));
  assert_non_null(strstr(csv, "# region of interest: mask > 0\n"));
  int lines = 0;
  for (char *c = csv; *c; c++) lines += *c == '\n';
  assert_int_equal(lines, 5 + 1 + 20); /* settings, header, rows */
  free(csv);
  /* a model from the classification phantom's whole images: better than chance on test */
  assert_int_equal(cli("data phantom --n 200 --out @/cls.npz", out, sizeof out), 0);
  assert_int_equal(cli("radiomics train --data @/cls.npz --out @/m.json --max-features 10 --quiet",
                       out, sizeof out),
                   0);
  const char *test_row = strstr(out, "\ntest ");
  assert_non_null(test_row);
  double acc = 0;
  assert_int_equal(sscanf(test_row, "\ntest %*d %lf%%", &acc), 1);
  if (acc < 65) fail_msg("a radiomics model at %.2f%% test accuracy on the phantom:\n%s", acc, out);
  RadiomicsModel model;
  MrError err = {0};
  snprintf(path, sizeof path, "%s/m.json", dir);
  assert_int_equal(radiomics_model_load(path, &model, &err), STATUS_OK);
  assert_true(model.n_features >= 1 && model.n_features <= 10 && model.k == 2);
  assert_non_null(strstr(model.training, "\"test\": {\"accuracy\""));
  radiomics_model_free(&model);
  /* and attacked from the CLI: a table per eps, the per-image CSV and the JSON summary */
  assert_int_equal(
      cli("radiomics attack --model @/m.json --data @/cls.npz --limit 3 --eps 0.02,0.05 "
          "--queries 40 --quiet --out @/ra",
          out, sizeof out),
      0);
  assert_non_null(strstr(out, "moved most at eps 0.05"));
  snprintf(path, sizeof path, "%s/ra/radiomics_attack.csv", dir);
  char *table = read_text(path);
  int attack_lines = 0;
  for (char *c = table; *c; c++) attack_lines += *c == '\n';
  assert_int_equal(attack_lines, 1 + 3 * 2);
  free(table);
  snprintf(path, sizeof path, "%s/ra/radiomics_attack.json", dir);
  assert_int_equal(access(path, R_OK), 0);
  snprintf(path, sizeof path, "%s/f.json", dir);
  char *json_text = read_text(path);
  cJSON *json = cJSON_Parse(json_text);
  free(json_text);
  assert_non_null(json);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(json, "features")), 483);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(json, "images")), 20);
  cJSON_Delete(json);
  snprintf(path, sizeof path, "%s/phantom.nii.gz", PHANTOM_DIR);
  if (access(path, R_OK) == 0) {
    snprintf(args, sizeof args,
             "radiomics extract --image %s/phantom.nii.gz --mask %s/mask.nii.gz --no-binning "
             "--out @/p.csv",
             PHANTOM_DIR, PHANTOM_DIR);
    assert_int_equal(cli(args, out, sizeof out), 0);
    snprintf(path, sizeof path, "%s/p.csv", dir);
    csv = read_text(path);
    assert_non_null(strstr(csv, "phantom.nii.gz,,556.33")); /* morph_volume, first column */
    free(csv);
  }
  static const struct {
    int code;
    const char *args, *needle;
  } rows[] = {
      {2, "radiomics extract --mask @/m.nii --out @/x.csv", "one of --image or --data"},
      {2, "radiomics extract --image @/a.nii --data @/seg.npz --out @/x.csv", "one of --image"},
      {2, "radiomics extract --data @/seg.npz --out @/x.csv --bin-count 0", "--bin-count expects"},
      {2, "radiomics extract --data @/seg.npz --out @/seg.npz", "is also --data"},
      {2, "radiomics extract --data @/seg.npz --whole-image --label 1 --out @/x.csv",
       "--label needs a data set with masks"},
      {2, "radiomics draw", "usage: medrobust radiomics extract"},
      {2, "radiomics train --data @/cls.npz --out @/m.json --classifier forest",
       "--classifier must be logistic-l2, logistic-l1 or svm"},
      {1, "radiomics train --data @/seg.npz --out @/m.json", "no per-image classes"},
      {2, "radiomics attack --model @/m.json --data @/cls.npz --region lesion --out @/ra",
       "--region all, roi or background"},
      {2, "radiomics attack --model @/m.json --data @/cls.npz --eps 2 --out @/ra", "--eps '2'"},
      {2, "radiomics attack --model @/m.json --data @/cls.npz --target 7 --out @/ra",
       "not one of the model's 2 classes"},
      {1, "radiomics attack --model @/cls.npz --data @/cls.npz --out @/ra",
       "not a medrobust radiomics model"},
      {1, "radiomics extract --image @/missing.nii --out @/x.csv", "not a readable NIfTI file"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    const int code = cli(rows[i].args, out, sizeof out);
    if (code != rows[i].code || !strstr(out, rows[i].needle))
      fail_msg("'%s' exited %d (want %d) without '%s':\n%s", rows[i].args, code, rows[i].code,
               rows[i].needle, out);
  }
}

/* Selection drops the constant and the duplicated feature and ranks the informative one
 * first; the classifiers separate the classes; a saved model reads back to the same logits. */
static void test_model_train_and_file(void **state) {
  (void)state;
  enum { N = 200, F = 4 };
  double x[N * F];
  int y[N];
  Rng rng;
  rng_seed(&rng, 3);
  for (int i = 0; i < N; i++) {
    y[i] = i % 2;
    const double signal = (y[i] ? 1.0 : -1.0) + 0.5 * rng_normal(&rng);
    x[i * F + 0] = rng_normal(&rng);                          /* noise */
    x[i * F + 1] = 7.0;                                       /* constant */
    x[i * F + 2] = 3 * signal + 10;                           /* informative */
    x[i * F + 3] = 3 * signal + 10 + 1e-9 * rng_normal(&rng); /* its duplicate */
  }
  const char *tags[F] = {"noise", "constant", "signal", "duplicate"};
  MrError err = {0};
  for (int c = 0; c < RAD_CLASSIFIER_COUNT; c++) {
    RadiomicsTrainOptions o = {(RadiomicsClassifier)c, 1.0, 20, 0.9};
    RadiomicsModel m;
    assert_int_equal(radiomics_model_train(x, tags, F, y, N, 2, &o, &m, &err), STATUS_OK);
    assert_int_equal(m.n_features, 2); /* the constant and the duplicate are gone */
    /* the informative one (or its twin, equally good) first; the other twin dropped */
    assert_true(!strcmp(m.tags[0], "signal") || !strcmp(m.tags[0], "duplicate"));
    assert_string_equal(m.tags[1], "noise");
    RadiomicsFeatures f = {0};
    int right = 0;
    for (int i = 0; i < N; i++) {
      f.n = 0;
      for (int k = 0; k < F; k++) {
        if (f.n == f.cap)
          f.items = realloc(f.items, sizeof *f.items * (f.cap = f.cap ? 2 * f.cap : 8));
        RadiomicsFeature *one = &f.items[f.n++];
        memset(one, 0, sizeof *one);
        snprintf(one->tag, sizeof one->tag, "%s", tags[k]);
        one->value = x[i * F + k];
      }
      double z[2];
      assert_int_equal(radiomics_model_logits(&m, &f, z, &err), STATUS_OK);
      right += (z[1] > z[0]) == y[i];
    }
    if (right < N * 9 / 10)
      fail_msg("%s: %d of %d right", radiomics_classifier_name(m.classifier), right, N);
    char path[320];
    snprintf(path, sizeof path, "%s/model.json", dir);
    m.setup = radiomics_setup_default();
    m.class_names = calloc(2, sizeof(char *));
    m.class_names[0] = strdup("benign"), m.class_names[1] = strdup("malignant");
    assert_int_equal(radiomics_model_save(&m, path, &err), STATUS_OK);
    RadiomicsModel back;
    assert_int_equal(radiomics_model_load(path, &back, &err), STATUS_OK);
    double z1[2], z2[2];
    assert_int_equal(radiomics_model_logits(&m, &f, z1, &err), STATUS_OK);
    assert_int_equal(radiomics_model_logits(&back, &f, z2, &err), STATUS_OK);
    for (int k = 0; k < 2; k++) assert_true(fabs(z1[k] - z2[k]) <= 1e-9 * (1 + fabs(z1[k])));
    assert_string_equal(back.class_names[1], "malignant");
    assert_int_equal(back.classifier, m.classifier);
    radiomics_features_free(&f);
    radiomics_model_free(&m), radiomics_model_free(&back);
  }
  /* malformed model files: a clear error each */
#define HEAD "{\"format\": \"medrobust radiomics model 1\", "
  static const struct {
    const char *text, *needle;
  } bad[] = {
      {"not json", "not a medrobust radiomics model"},
      {"{\"format\": \"something else\"}", "not a medrobust radiomics model"},
      {HEAD "\"features\": [], \"classes\": [\"a\", \"b\"]}", "feature list is missing or empty"},
      {HEAD "\"features\": [\"f\"], \"classes\": [\"a\", \"b\"], \"weights\": [[1]], "
            "\"extraction\": {}, \"classifier\": \"svm\"}",
       "weights do not have a row per class"},
      {HEAD "\"features\": [\"f\"], \"classes\": [\"a\", \"b\"], \"weights\": [[1], [2]], "
            "\"extraction\": {\"binning\": \"count\"}, \"classifier\": \"svm\", \"mean\": [0], "
            "\"scale\": [0], \"bias\": [0, 0]}",
       "scale is not positive"},
      {HEAD "\"features\": [\"f\"], \"classes\": [\"a\", \"b\"], \"weights\": [[1], [1e999]], "
            "\"extraction\": {\"binning\": \"count\"}, \"classifier\": \"svm\", \"mean\": [0], "
            "\"scale\": [1], \"bias\": [0, 0]}",
       "weight row is not a list of finite numbers"},
      {HEAD "\"features\": [\"f\"], \"classes\": [\"a\", \"b\"], \"weights\": [[1], [1]], "
            "\"extraction\": {\"binning\": \"count\"}, \"classifier\": \"forest\", \"mean\": [0], "
            "\"scale\": [1], \"bias\": [0, 0]}",
       "classifier is not"},
  };
#undef HEAD
  char path[320];
  snprintf(path, sizeof path, "%s/bad.json", dir);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    FILE *fp = fopen(path, "w");
    fputs(bad[i].text, fp);
    fclose(fp);
    RadiomicsModel m;
    if (radiomics_model_load(path, &m, &err) == STATUS_OK || !strstr(err.msg, bad[i].needle))
      fail_msg("bad model %zu: '%s'", i, err.msg);
  }
}

/* A hand-made model reading the ROI's mean intensity: the attacks must stay in the eps ball
 * and [0,1], never raise the margin, touch only the region they are given, spend at most
 * their budget, and succeed where the budget allows it (inside the ROI) but not where the
 * features cannot move (outside it). */
static void test_attacks_on_a_pipeline(void **state) {
  (void)state;
  enum { H = 16, W = 16 };
  RadiomicsModel m = {0};
  m.setup = radiomics_setup_default();
  m.setup.extraction.bin_count = 8;
  m.n_features = 1, m.k = 2, m.classifier = RAD_LOGISTIC_L2;
  m.tags = calloc(1, sizeof *m.tags);
  snprintf(m.tags[0], sizeof m.tags[0], "stat_mean");
  m.mean = calloc(1, sizeof(double)), m.scale = calloc(1, sizeof(double));
  m.weights = calloc(2, sizeof(double)), m.bias = calloc(2, sizeof(double));
  m.mean[0] = 0.5, m.scale[0] = 0.1, m.weights[0] = -1, m.weights[1] = 1;
  float image[H * W], adv[H * W];
  int mask[H * W];
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      const int in = (x - 8) * (x - 8) + (y - 8) * (y - 8) < 25;
      mask[y * W + x] = in;
      image[y * W + x] = in ? 0.45f + 0.01f * ((x + y) % 3) - 0.01f : 0.2f;
    }
  MrError err = {0};
  for (int kind = 0; kind < RAD_ATTACK_COUNT; kind++)
    for (int region = 0; region < RAD_REGION_COUNT; region++) {
      RadiomicsAttackOptions o = radiomics_attack_options_default();
      o.kind = (RadiomicsAttackKind)kind, o.region = (RadiomicsRegion)region;
      o.eps = 0.15f, o.queries = 1000, o.samples = 4;
      RadiomicsAttackResult r;
      assert_int_equal(radiomics_attack(&m, image, 1, H, W, mask, 0, &o, adv, &r, &err), STATUS_OK);
      assert_int_equal(r.clean_pred, 0);
      assert_true(r.clean_margin > 0);
      assert_true(r.adv_margin <= r.clean_margin);
      assert_true(r.queries >= 1 && r.queries <= o.queries);
      for (int i = 0; i < H * W; i++) {
        assert_true(adv[i] >= 0.0f && adv[i] <= 1.0f);
        assert_true(fabsf(adv[i] - image[i]) <= o.eps + 1e-6f);
        if (region == RAD_REGION_ROI && !mask[i]) assert_true(adv[i] == image[i]);
        if (region == RAD_REGION_BACKGROUND && mask[i]) assert_true(adv[i] == image[i]);
      }
      /* the ROI's mean can rise by up to eps: enough to cross 0.5 */
      if (region != RAD_REGION_BACKGROUND && (r.adv_pred != 1 || r.adv_margin >= 0))
        fail_msg("%s, region %s: not fooled (margin %g -> %g)", radiomics_attack_name(o.kind),
                 radiomics_region_name(o.region), r.clean_margin, r.adv_margin);
      /* outside the ROI nothing the model reads can move */
      if (region == RAD_REGION_BACKGROUND)
        assert_true(r.adv_pred == 0 && r.adv_margin == r.clean_margin);
      /* re-scored on the exact features */
      double z;
      assert_int_equal(radiomics_model_zscores(&m, adv, 1, H, W, mask, &z, &err), STATUS_OK);
      assert_true((z > 0) == (r.adv_pred == 1));
    }
  /* eps 0 changes nothing; a target out of range is refused */
  RadiomicsAttackOptions o = radiomics_attack_options_default();
  o.eps = 0, o.queries = 20;
  RadiomicsAttackResult r;
  assert_int_equal(radiomics_attack(&m, image, 1, H, W, mask, 0, &o, adv, &r, &err), STATUS_OK);
  assert_memory_equal(adv, image, sizeof image);
  o.target = 5;
  assert_int_not_equal(radiomics_attack(&m, image, 1, H, W, mask, 0, &o, adv, &r, &err), STATUS_OK);
  radiomics_model_free(&m);
}

/* ICC(3,1) by hand: a worked example, its consistency (an offset costs nothing), and the
 * stability command end to end on a few images. */
static void test_stability(void **state) {
  (void)state;
  const double a[4] = {1, 2, 3, 4}, b[4] = {2, 4, 6, 8}, shifted[4] = {6, 7, 8, 9};
  /* rows 1.5..6, columns 2.5 and 5: MS_rows 7.5, MS_error 2.5 / 3, so (7.5 - 5/6) / (7.5 + 5/6) */
  assert_true(fabs(radiomics_icc31(a, b, 4) - 0.8) < 1e-12);
  assert_true(fabs(radiomics_icc31(a, shifted, 4) - 1.0) < 1e-12);
  assert_true(isnan(radiomics_icc31(a, b, 1)));
  char out[8192];
  assert_int_equal(
      cli("radiomics stability --model @/m.json --data @/cls.npz --limit 5 --queries 20 "
          "--eps 0.05 --quiet --out @/ra/radiomics_stability.csv",
          out, sizeof out),
      0);
  assert_non_null(strstr(out, "adversarial"));
  assert_non_null(strstr(out, "moved most by the attack"));
  char path[320];
  snprintf(path, sizeof path, "%s/ra/radiomics_stability.csv", dir);
  char *csv = read_text(path);
  int lines = 0;
  for (char *c = csv; *c; c++) lines += *c == '\n';
  assert_int_equal(lines, 2 + 483); /* the settings line, the header, a row per feature */
  assert_non_null(strstr(csv,
                         "feature,ibsi_name,in_model,icc_gaussian,icc_rician,icc_poisson,"
                         "icc_adversarial,adversarial_sd_per_ssim\n"));
  free(csv);
  /* the folder's report now holds the attack (run by test_extract_command) and the stability */
  snprintf(path, sizeof path, "%s/ra/report.html", dir);
  char *html = read_text(path);
  assert_non_null(strstr(html, "Radiomics under attack"));
  assert_non_null(strstr(html, "Adversarial vs irreproducible"));
  assert_non_null(strstr(html, "data:image/png;base64,")); /* the example images, embedded */
  free(html);
}

/* Resampling: to the same spacing it is the identity; a linear ramp stays linear at any
 * spacing (trilinear interpolation is exact on it); a mask is thresholded; one slice stays
 * one slice. */
static void test_resample(void **state) {
  (void)state;
  enum { NX = 6, NY = 4, NZ = 3 };
  float ramp[NX * NY * NZ];
  for (int z = 0; z < NZ; z++)
    for (int y = 0; y < NY; y++)
      for (int x = 0; x < NX; x++) ramp[(z * NY + y) * NX + x] = (float)(2 * x + 3 * y + 5 * z);
  const Volume v = {.nx = NX, .ny = NY, .nz = NZ, .sx = 2.0, .sy = 2.0, .sz = 2.0, .data = ramp};
  Volume same, fine;
  MrError err = {0};
  assert_int_equal(radiomics_resample(&v, 2.0, 0, &same, &err), STATUS_OK);
  assert_int_equal(same.nx, NX), assert_int_equal(same.ny, NY), assert_int_equal(same.nz, NZ);
  assert_memory_equal(same.data, ramp, sizeof ramp);
  assert_int_equal(radiomics_resample(&v, 1.0, 0, &fine, &err), STATUS_OK);
  assert_int_equal(fine.nx, 12), assert_int_equal(fine.ny, 8), assert_int_equal(fine.nz, 6);
  /* new voxel i sits at old (i - 5.5) / 2 + 2.5 along x: interior voxels follow the ramp */
  for (int x = 1; x < 11; x++) {
    const double old_x = (x - 5.5) / 2 + 2.5;
    const float got = fine.data[(3 * 8 + 3) * 12 + x];
    const double old_y = (3 - 3.5) / 2 + 1.5, old_z = (3 - 2.5) / 2 + 1.0;
    assert_true(fabs(got - (2 * old_x + 3 * old_y + 5 * old_z)) < 1e-4);
  }
  volume_free(&same), volume_free(&fine);
  float mask[4 * 4] = {0};
  mask[5] = mask[6] = mask[9] = mask[10] = 1; /* the central 2x2 */
  const Volume m = {.nx = 4, .ny = 4, .nz = 1, .sx = 1.0, .sy = 1.0, .sz = 3.0, .data = mask};
  Volume half;
  assert_int_equal(radiomics_resample(&m, 0.5, 1, &half, &err), STATUS_OK);
  assert_int_equal(half.nx, 8), assert_int_equal(half.nz, 1);
  assert_true(half.sz == 3.0);
  int inside = 0;
  for (int i = 0; i < 64; i++) {
    assert_true(half.data[i] == 0.0f || half.data[i] == 1.0f);
    inside += half.data[i] == 1.0f;
  }
  assert_true(inside >= 16 && inside <= 36); /* the 2x2 at twice the resolution, give or take */
  volume_free(&half);
  assert_int_not_equal(radiomics_resample(&m, 0, 1, &half, &err), STATUS_OK);
}

/* A large 3-D ROI (32,000 voxels): Moran's I and Geary's C switch to their subset estimate and
 * stay finite; every family returns. */
static void test_large_volume(void **state) {
  (void)state;
  enum { NX = 40, NY = 40, NZ = 20 };
  float *voxels = malloc(sizeof(float) * NX * NY * NZ);
  for (int i = 0; i < NX * NY * NZ; i++) voxels[i] = (float)((i * 7919) % 1000) / 10.0f;
  const Volume v = {.nx = NX, .ny = NY, .nz = NZ, .sx = 1.0, .sy = 1.0, .sz = 2.0, .data = voxels};
  RadiomicsOptions o = radiomics_options_default();
  o.binning = RAD_BIN_WIDTH, o.bin_width = 5;
  RadiomicsFeatures f;
  MrError err = {0};
  assert_int_equal(radiomics_extract(&v, NULL, &o, &f, &err), STATUS_OK);
  assert_int_equal(f.n, 483);
  assert_true(isfinite(radiomics_find(&f, "morph_moran_i")->value));
  assert_true(isfinite(radiomics_find(&f, "morph_geary_c")->value));
  assert_true(radiomics_find(&f, "morph_vol_approx")->value == NX * NY * NZ * 2.0);
  radiomics_features_free(&f);
  free(voxels);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_ibsi_digital_phantom),
                                     cmocka_unit_test(test_nifti_reader),
                                     cmocka_unit_test(test_two_dimensional_roi),
                                     cmocka_unit_test(test_extract_command),
                                     cmocka_unit_test(test_model_train_and_file),
                                     cmocka_unit_test(test_attacks_on_a_pipeline),
                                     cmocka_unit_test(test_stability),
                                     cmocka_unit_test(test_resample),
                                     cmocka_unit_test(test_large_volume)};
  return cmocka_run_group_tests_name("radiomics", tests, setup, teardown);
}
