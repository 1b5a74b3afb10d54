/* Data readers on small files the tests write themselves: npz round trips and
 * malformed archives, image folders (PNG named .jpg, duplicates, unreadable
 * and non-image files, unlabelled folders, 16-bit PNGs, truncated JPEGs,
 * non-square images), CSV manifests and split files, split stability and
 * its record in a model file, gzipped IDX, the phantom, resampling and
 * augmentation. */
#include <stdio.h>
/* jpeglib.h needs stdio.h first */
#include <jpeglib.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#include "data/data.h"
#include "testutil.h"

static char dir[256];

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "data");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

static void in_dir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* Loads path and expects failure with `needle` in the message. */
static void expect_load_error(const char *path, const char *needle) {
  MrError err = {0};
  DataSplits *d = data_load(path, NULL, &err);
  if (d) fail_msg("%s loaded but should fail with '%s'", path, needle);
  if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_npz_round_trip(void **state) {
  (void)state;
  MrError err = {0};
  DataSplits *d = phantom_generate(28, 60, 3, &err);
  assert_non_null(d);
  char path[300];
  in_dir(path, sizeof path, "ph.npz");
  assert_int_equal(data_save_npz(d, path, &err), STATUS_OK);
  DataSplits *back = data_load(path, NULL, &err);
  if (!back) fail_msg("%s", err.msg);
  assert_int_equal(back->n_classes, 2);
  assert_string_equal(back->class_names[1], "malignant");
  for (int s = 0; s < SPLIT_COUNT; s++) {
    const Dataset *a = &d->split[s], *b = &back->split[s];
    assert_int_equal(a->n, b->n);
    assert_int_equal(b->c, 1);
    assert_int_equal(b->h, 28);
    assert_memory_equal(a->labels, b->labels, sizeof(int) * a->n);
    /* stored as uint8: within half a grey level */
    assert_true(max_abs_diff(a->images, b->images, (size_t)a->n * 28 * 28) <= 0.5 / 255 + 1e-6);
  }
  /* resized and converted on load */
  DataOptions opt = {.size = 32, .channels = 3};
  DataSplits *big = data_load(path, &opt, &err);
  assert_non_null(big);
  assert_int_equal(big->split[0].c, 3);
  assert_int_equal(big->split[0].h, 32);
  data_free(big);
  /* RGB stored channels-last (N,H,W,3), as MedMNIST's colour subsets */
  for (int sp = 0; sp < SPLIT_COUNT; sp++)
    assert_int_equal(dataset_set_channels(&d->split[sp], 3, &err), STATUS_OK);
  for (size_t i = 0; i < (size_t)d->split[0].n * 784; i++)
    d->split[0].images[i * 3 % ((size_t)d->split[0].n * 3 * 784)] *= 0.5f;
  char rgb[300];
  in_dir(rgb, sizeof rgb, "rgb.npz");
  assert_int_equal(data_save_npz(d, rgb, &err), STATUS_OK);
  DataSplits *back3 = data_load(rgb, NULL, &err);
  if (!back3) fail_msg("%s", err.msg);
  assert_int_equal(back3->split[0].c, 3);
  assert_true(max_abs_diff(d->split[0].images, back3->split[0].images,
                           (size_t)d->split[0].n * 3 * 784) <= 0.5 / 255 + 1e-6);
  data_free(back3);
  data_free(back);
  data_free(d);
}

/* A .npy member: header text for `dict` followed by `n` bytes of data. */
static uint8_t *npy(const char *dict, size_t n, size_t *len) {
  const size_t hl = strlen(dict), total = 10 + hl;
  uint8_t *b = calloc(total + n + 1, 1);
  memcpy(b, "\x93NUMPY\x01\x00", 8);
  b[8] = (uint8_t)hl, b[9] = (uint8_t)(hl >> 8);
  memcpy(b + 10, dict, hl);
  for (size_t i = 0; i < n; i++) b[total + i] = (uint8_t)(i % 2);
  *len = total + n;
  return b;
}

static void write_npz(const char *path, const char *train_images_dict, size_t image_bytes,
                      const char *train_labels_dict, size_t label_bytes, int bad_magic) {
  int e;
  zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &e);
  assert_non_null(za);
  const char *splits[3] = {"train", "val", "test"};
  for (int s = 0; s < 3; s++) {
    char name[64];
    size_t len;
    uint8_t *b = npy(train_images_dict, image_bytes, &len);
    if (bad_magic && s == 0) b[1] = 'X';
    snprintf(name, sizeof name, "%s_images.npy", splits[s]);
    zip_file_add(za, name, zip_source_buffer(za, b, len, 1), 0);
    b = npy(train_labels_dict, label_bytes, &len);
    snprintf(name, sizeof name, "%s_labels.npy", splits[s]);
    zip_file_add(za, name, zip_source_buffer(za, b, len, 1), 0);
  }
  assert_int_equal(zip_close(za), 0);
}

static void test_npz_malformed(void **state) {
  (void)state;
  char path[300];
  in_dir(path, sizeof path, "bad.npz");
  const char *img4 = "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 28, 28), }";
  const char *lab4 = "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 1), }";
  const char *lab3 = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 1), }";
  write_npz(path, img4, 4 * 784, lab4, 4, 0);
  MrError err = {0};
  DataSplits *ok = data_load(path, NULL, &err);
  if (!ok) fail_msg("the well-formed control failed: %s", err.msg);
  data_free(ok);

  write_npz(path, img4, 4 * 784, lab3, 3, 0);
  expect_load_error(path, "has 4 images but 3 labels");
  write_npz(path, img4, 4 * 784, lab4, 4, 1);
  expect_load_error(path, "bad magic");
  write_npz(path, img4, 100, lab4, 4, 0);
  expect_load_error(path, "truncated");
  /* 8-byte integer images (scaled by 1 / (2^64 - 1): a shift by 64), labels of 2^56 (cast to
   * int before their range check), float labels */
  write_npz(path, "{'descr': '<i8', 'fortran_order': False, 'shape': (4, 28, 28), }", 4 * 784 * 8,
            lab4, 4, 0);
  expect_load_error(path, "8-byte integers (8 or 16 bits");
  write_npz(path, img4, 4 * 784, "{'descr': '<i8', 'fortran_order': False, 'shape': (4, 1), }", 32,
            0);
  expect_load_error(path, "label 0 is 7.2");
  write_npz(path, img4, 4 * 784, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1), }", 16,
            0);
  expect_load_error(path, "train_labels must be integers");
  /* bytes beyond the shape were once ignored; a header declaring more than the member holds
   * is refused from the header alone, before the member is inflated */
  write_npz(path, img4, 4 * 784 + 100, lab4, 4, 0);
  expect_load_error(path, "its .npy header declares");
  write_npz(path, "{'descr': '|u1', 'fortran_order': False, 'shape': (4000000, 1000, 1000), }",
            4 * 784, lab4, 4, 0);
  expect_load_error(path, "its .npy header declares 4000000000");
  write_npz(path, "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 28, 28), }", 4 * 784 * 4,
            lab4, 4, 0);
  expect_load_error(path, "Fortran");
  write_npz(path, img4, 4 * 784, "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 3), }", 12,
            0);
  expect_load_error(path, "multi-label");

  /* a decompression bomb: 300 MiB of zeros stored in about 300 KiB (1000:1) is refused before
   * it is inflated; --max-inflate-ratio 0 (the limit lifted) reads on to the next problem */
  {
    int e;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &e);
    size_t len;
    uint8_t *b = npy("{'descr': '|u1', 'fortran_order': False, 'shape': (300, 1024, 1024), }",
                     (size_t)300 << 20, &len);
    zip_file_add(za, "train_images.npy", zip_source_buffer(za, b, len, 1), 0);
    b = npy(lab4, 4, &len);
    zip_file_add(za, "train_labels.npy", zip_source_buffer(za, b, len, 1), 0);
    assert_int_equal(zip_close(za), 0);
    expect_load_error(path, "(over 200:1; a decompression bomb?");
    const MrLimits saved = mr_limits();
    MrLimits lifted = saved;
    lifted.inflate_ratio = 0;
    mr_set_limits(lifted);
    DataSplits *d = data_load(path, NULL, &err);
    mr_set_limits(saved);
    assert_null(d);
    assert_null(strstr(err.msg, "bomb"));
    assert_non_null(strstr(err.msg, "300 images but 4 labels"));
  }

  /* a zip cut short, a file that is not a zip, a missing file */
  write_npz(path, img4, 4 * 784, lab4, 4, 0);
  FILE *f = fopen(path, "rb");
  uint8_t buf[65536];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  f = fopen(path, "wb");
  fwrite(buf, 1, n / 2, f);
  fclose(f);
  expect_load_error(path, "not a readable .npz");
  f = fopen(path, "wb");
  fputs("hello", f);
  fclose(f);
  expect_load_error(path, "not a readable .npz");
  expect_load_error("/nonexistent/x.npz", "No such file");
  expect_load_error("/nonexistent/folder", "no such file or folder");
}

static void write_png(const char *path, int w, int h, int rgb, uint8_t value) {
  png_image p;
  memset(&p, 0, sizeof p);
  p.version = PNG_IMAGE_VERSION;
  p.width = (png_uint_32)w, p.height = (png_uint_32)h;
  p.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  uint8_t *px = malloc((size_t)w * h * (rgb ? 3 : 1));
  for (int i = 0; i < w * h * (rgb ? 3 : 1); i++) px[i] = (uint8_t)(value + i % 3);
  assert_true(png_image_write_to_file(&p, path, 0, px, 0, NULL));
  free(px);
}

static void test_image_folder(void **state) {
  (void)state;
  char root[300], cls[320], file[400];
  in_dir(root, sizeof root, "folder");
  mkdir(root, 0755);
  const char *classes[2] = {"no", "yes"};
  for (int c = 0; c < 2; c++) {
    snprintf(cls, sizeof cls, "%s/%s", root, classes[c]);
    mkdir(cls, 0755);
    for (int i = 0; i < 10; i++) {
      /* PNGs of various sizes, some RGB, some named .jpg */
      snprintf(file, sizeof file, "%s/img%d.%s", cls, i, i % 3 ? "png" : "jpg");
      write_png(file, 40 + i * 7, 30 + i * 5, i % 2, (uint8_t)(c * 100 + i));
    }
  }
  /* an exact duplicate is dropped */
  snprintf(file, sizeof file, "%s/yes/copy.png", root);
  char src[400];
  snprintf(src, sizeof src, "%s/yes/img1.png", root);
  FILE *in = fopen(src, "rb"), *out = fopen(file, "wb");
  int ch;
  while ((ch = fgetc(in)) != EOF) fputc(ch, out);
  fclose(in), fclose(out);
  DataOptions opt = {.size = 32, .seed = 5};
  MrError err = {0};
  DataSplits *d = data_load(root, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->n_classes, 2);
  assert_string_equal(d->class_names[1], "yes");
  assert_int_equal(d->split[0].n + d->split[1].n + d->split[2].n, 20);
  assert_int_equal(d->split[0].n, 14); /* 7 of each class */
  assert_non_null(strstr(d->source, "1 duplicate"));
  assert_int_equal(d->split[0].c, 1);
  assert_int_equal(d->split[0].h, 32);
  /* every image names its file, relative to the root */
  for (int sp = 0; sp < SPLIT_COUNT; sp++)
    for (int i = 0; i < d->split[sp].n; i++) {
      const char *f = d->split[sp].files[i];
      const char *cls_dir = d->split[sp].labels[i] ? "yes/" : "no/";
      assert_true(strncmp(f, cls_dir, strlen(cls_dir)) == 0);
    }
  assert_int_equal(d->split_kind, SPLIT_SEEDED);
  const uint64_t listing = d->listing_hash, assignment = d->assignment_hash;
  data_free(d);
  /* a file that is not an image is skipped and counted, not fatal */
  snprintf(file, sizeof file, "%s/no/notes.txt", root);
  FILE *notes = fopen(file, "w");
  fputs("not an image", notes);
  fclose(notes);
  d = data_load(root, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->skipped, 1);
  assert_string_equal(d->skipped_example, "no/notes.txt");
  /* the same files and seed give the same split; another seed another split */
  assert_true(d->listing_hash == listing && d->assignment_hash == assignment);
  data_free(d);
  opt.seed = 6;
  d = data_load(root, &opt, &err);
  assert_true(d->listing_hash == listing && d->assignment_hash != assignment);
  data_free(d);
  opt.seed = 5;
  /* an unreadable image is named in the error */
  snprintf(file, sizeof file, "%s/no/broken.png", root);
  FILE *f = fopen(file, "wb");
  fputs("\x89PNG\r\n\x1a\ngarbage", f);
  fclose(f);
  expect_load_error(root, "broken.png");
  remove(file);
  /* an empty class folder (or one of non-images) is an error, not a class no image shows */
  snprintf(cls, sizeof cls, "%s/maybe", root);
  mkdir(cls, 0755);
  expect_load_error(root, "class folder 'maybe' holds no PNG, JPEG, DICOM or NIfTI image");
  rmdir(cls);
  snprintf(file, sizeof file, "%s/no/notes.txt", root);
  remove(file);
}

static void write_png16(const char *path, int w, int h, const uint16_t *px) {
  png_image p;
  memset(&p, 0, sizeof p);
  p.version = PNG_IMAGE_VERSION;
  p.width = (png_uint_32)w, p.height = (png_uint_32)h;
  p.format = PNG_FORMAT_LINEAR_Y;
  assert_true(png_image_write_to_file(&p, path, 0, px, 0, NULL));
}

/* A 16-bit PNG keeps its stored values (no gamma conversion): a CT window
 * or an X-ray's fine grey levels reach the model as stored. */
/* The pixel limit is checked on the declared size, before decoding, and can be raised. */
static void test_image_size_limit(void **state) {
  (void)state;
  char path[300];
  in_dir(path, sizeof path, "limit.png");
  write_png(path, 64, 48, 0, 10);
  size_t len = 0;
  MrError err = {0};
  uint8_t *bytes = file_read_all(path, 1 << 20, &len, &err);
  const MrLimits saved = mr_limits();
  MrLimits small = saved;
  small.image_pixels = 64 * 48 - 1;
  mr_set_limits(small);
  DecodedImage im;
  const char *why = image_decode(&im, bytes, len);
  assert_non_null(why);
  assert_non_null(strstr(why, "64x48 is larger than"));
  assert_non_null(strstr(why, "--max-megapixels"));
  small.image_pixels = 64 * 48;
  mr_set_limits(small);
  assert_null(image_decode(&im, bytes, len));
  free(im.pixels);
  mr_set_limits(saved);
  free(bytes);
}

static void test_png_16bit_values(void **state) {
  (void)state;
  char root[300], cls[320], file[400];
  in_dir(root, sizeof root, "deep");
  mkdir(root, 0755);
  for (int c = 0; c < 2; c++) {
    snprintf(cls, sizeof cls, "%s/%c", root, 'a' + c);
    mkdir(cls, 0755);
    for (int i = 0; i < 3; i++) {
      uint16_t px[16];
      for (int j = 0; j < 16; j++) px[j] = (uint16_t)(1000 * (c + 1) + 7 * i + j);
      snprintf(file, sizeof file, "%s/%d.png", cls, i);
      write_png16(file, 4, 4, px);
    }
  }
  DataOptions opt = {.size = 4, .seed = 1};
  MrError err = {0};
  DataSplits *d = data_load(root, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->bits, 16);
  for (int sp = 0; sp < SPLIT_COUNT; sp++)
    for (int i = 0; i < d->split[sp].n; i++) {
      int c = 0, k = 0;
      assert_int_equal(sscanf(d->split[sp].files[i], "%*c/%d.png", &k), 1);
      c = d->split[sp].labels[i];
      for (int j = 0; j < 16; j++)
        assert_float_equal(d->split[sp].images[i * 16 + j], (1000 * (c + 1) + 7 * k + j) / 65535.0,
                           1e-7);
    }
  data_free(d);
}

/* Non-square images: a white stripe in the left quarter of a 40x20 image. */
static void test_fit_modes(void **state) {
  (void)state;
  DecodedImage im = {.w = 40, .h = 20, .channels = 1, .bits = 8};
  im.pixels = calloc(40 * 20, sizeof(float));
  for (int y = 0; y < 20; y++)
    for (int x = 0; x < 10; x++) im.pixels[y * 40 + x] = 1.0f;
  float out[20 * 20];
  /* crop: the centre 20 columns, no stripe (torchvision Resize(20)+CenterCrop(20)) */
  assert_null(image_fit(&im, out, 1, 20, FIT_CROP));
  double sum = 0;
  for (int i = 0; i < 400; i++) sum += out[i];
  assert_float_equal(sum, 0.0, 1e-9);
  /* stretch: the stripe becomes the left quarter of every row */
  assert_null(image_fit(&im, out, 1, 20, FIT_STRETCH));
  assert_float_equal(out[0], 1.0f, 1e-6);
  assert_float_equal(out[10], 0.0f, 1e-6);
  /* pad: scaled to 20x10, black bands above and below */
  assert_null(image_fit(&im, out, 1, 20, FIT_PAD));
  assert_float_equal(out[0], 0.0f, 1e-6);
  assert_float_equal(out[10 * 20 + 0], 1.0f, 1e-6);
  assert_float_equal(out[10 * 20 + 10], 0.0f, 1e-6);
  free(im.pixels);
}

static void write_jpeg(const char *path, int w, int h, int truncate) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  unsigned char *buf = NULL;
  unsigned long len = 0;
  jpeg_mem_dest(&c, &buf, &len);
  c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h;
  c.input_components = 1, c.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  unsigned char *row = malloc((size_t)w);
  while (c.next_scanline < c.image_height) {
    for (int x = 0; x < w; x++) row[x] = (unsigned char)((x * 7 + c.next_scanline * 3) % 256);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  FILE *f = fopen(path, "wb");
  fwrite(buf, 1, truncate ? len / 2 : len, f);
  fclose(f);
  free(row), free(buf);
  jpeg_destroy_compress(&c);
}

/* Images without class folders: an unlabelled set, all in the test split;
 * a truncated JPEG is an error naming it, never a half-grey image. */
static void test_unlabelled_folder(void **state) {
  (void)state;
  char root[300], file[400];
  in_dir(root, sizeof root, "unlabelled");
  mkdir(root, 0755);
  for (int i = 0; i < 5; i++) {
    snprintf(file, sizeof file, "%s/scan%d.jpg", root, i);
    write_jpeg(file, 48 + i, 40, 0);
  }
  snprintf(file, sizeof file, "%s/README", root);
  FILE *f = fopen(file, "w");
  fputs("notes", f);
  fclose(f);
  DataOptions opt = {.size = 16};
  MrError err = {0};
  DataSplits *d = data_load(root, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_true(d->unlabelled);
  assert_int_equal(d->skipped, 1);
  assert_int_equal(d->split[SPLIT_TEST].n, 5);
  assert_int_equal(d->split[SPLIT_TRAIN].n + d->split[SPLIT_VAL].n, 0);
  for (int i = 0; i < 5; i++) assert_int_equal(d->split[SPLIT_TEST].labels[i], -1);
  assert_string_equal(d->split[SPLIT_TEST].files[0], "scan0.jpg");
  data_free(d);
  snprintf(file, sizeof file, "%s/scan9.jpg", root);
  write_jpeg(file, 64, 64, 1);
  expect_load_error(root, "scan9.jpg: truncated or damaged JPEG data");
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

/* A CSV manifest path,label,split and a split file over a folder. */
static void test_manifest_and_split_file(void **state) {
  (void)state;
  char root[300], sub[320], file[400], csv[400];
  in_dir(root, sizeof root, "manifest");
  mkdir(root, 0755);
  const char *classes[2] = {"benign", "malignant"};
  for (int c = 0; c < 2; c++) {
    snprintf(sub, sizeof sub, "%s/%s", root, classes[c]);
    mkdir(sub, 0755);
    for (int i = 0; i < 4; i++) {
      snprintf(file, sizeof file, "%s/%d.png", sub, i);
      write_png(file, 20, 20, 0, (uint8_t)(40 * c + 9 * i));
    }
  }
  snprintf(csv, sizeof csv, "%s/list.csv", root);
  write_text(csv,
             "path,label,split\n"
             "benign/0.png,benign,train\nbenign/1.png,benign,train\n"
             "\"benign/2.png\",benign,val\nbenign/3.png,benign,test\n"
             "malignant/0.png,malignant,train\nmalignant/1.png,malignant,test\n");
  DataOptions opt = {.size = 20};
  MrError err = {0};
  DataSplits *d = data_load(csv, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->split_kind, SPLIT_LISTED);
  assert_int_equal(d->n_classes, 2);
  assert_string_equal(d->class_names[1], "malignant");
  assert_int_equal(d->split[SPLIT_TRAIN].n, 3);
  assert_int_equal(d->split[SPLIT_VAL].n, 1);
  assert_int_equal(d->split[SPLIT_TEST].n, 2);
  assert_string_equal(d->split[SPLIT_TEST].files[1], "malignant/1.png");
  assert_int_equal(d->split[SPLIT_TEST].labels[1], 1);
  data_free(d);
  write_text(csv,
             "path,label,split\nbenign/0.png,benign,holdout\nmalignant/0.png,malignant,test\n");
  expect_load_error(csv, "row 2: split 'holdout'");
  write_text(csv, "path,label\nbenign/9.png,benign\nmalignant/0.png,malignant\n");
  expect_load_error(csv, "benign/9.png: cannot open");
  /* a split file over the folder: listed files as listed, the rest left out */
  write_text(csv, "path,split\nbenign/0.png,train\nmalignant/3.png,test\nbenign/1.png,val\n");
  opt.split_file = csv;
  snprintf(file, sizeof file, "%s/list.csv", root);
  d = data_load(root, &opt, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->split_kind, SPLIT_LISTED);
  assert_int_equal(d->split[SPLIT_TRAIN].n + d->split[SPLIT_VAL].n + d->split[SPLIT_TEST].n, 3);
  assert_string_equal(d->split[SPLIT_TEST].files[0], "malignant/3.png");
  data_free(d);
  write_text(csv, "path,split\nbenign/7.png,train\n");
  d = data_load(root, &opt, &err);
  assert_null(d);
  assert_non_null(strstr(err.msg, "row 2: 'benign/7.png' is not an image of"));
}

/* A model records its split; later loads reuse it, and refuse a folder whose
 * files changed unless a re-split is asked for. No training image ever
 * reaches the test split. */
static void test_split_recorded_in_model(void **state) {
  (void)state;
  char root[300], sub[320], file[400];
  in_dir(root, sizeof root, "record");
  mkdir(root, 0755);
  for (int c = 0; c < 2; c++) {
    snprintf(sub, sizeof sub, "%s/%c", root, 'p' + c);
    mkdir(sub, 0755);
    for (int i = 0; i < 20; i++) {
      snprintf(file, sizeof file, "%s/%02d.png", sub, i);
      write_png(file, 24 + i, 24, 0, (uint8_t)(10 * c + 3 * i));
    }
  }
  DataOptions opt = {.size = 28, .seed = 3};
  MrError err = {0};
  DataSplits *train_view = data_load(root, &opt, &err);
  if (!train_view) fail_msg("%s", err.msg);
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  spec.depth = 2;
  spec.class_names[0] = strdup("p"), spec.class_names[1] = strdup("q");
  Net *net = model_build(&spec, 1, &err);
  model_spec_free(&spec);
  if (!net) fail_msg("%s", err.msg);
  char record[MR_DATA_LEN];
  data_record_json(train_view, record, sizeof record);
  net_set_data_record(net, record);
  char path[400];
  in_dir(path, sizeof path, "m.safetensors");
  assert_int_equal(safetensors_save_net(net, path, &err), STATUS_OK);
  net_free(net);
  net = safetensors_load_net(path, &err);
  assert_non_null(net);
  char warning[512];
  DataSplits *later = data_load_for_model(root, net, NULL, warning, sizeof warning, &err);
  if (!later) fail_msg("%s", err.msg);
  assert_string_equal(warning, "");
  /* the test split is the training-time test split, file for file */
  const Dataset *a = &train_view->split[SPLIT_TEST], *b = &later->split[SPLIT_TEST];
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) assert_string_equal(a->files[i], b->files[i]);
  for (int i = 0; i < b->n; i++)
    for (int j = 0; j < train_view->split[SPLIT_TRAIN].n; j++)
      assert_string_not_equal(b->files[i], train_view->split[SPLIT_TRAIN].files[j]);
  data_free(later);
  /* one more file moves a seeded split: refused, with both counts */
  snprintf(file, sizeof file, "%s/p/new.png", root);
  write_png(file, 30, 30, 0, 200);
  later = data_load_for_model(root, net, NULL, warning, sizeof warning, &err);
  assert_null(later);
  assert_non_null(strstr(err.msg, "other files than the model was trained on (40 then, 41 now"));
  /* unless a re-split is asked for: then a warning */
  DataCheck check = {.split_seed_given = 1, .split_seed = 3};
  later = data_load_for_model(root, net, &check, warning, sizeof warning, &err);
  if (!later) fail_msg("%s", err.msg);
  assert_non_null(strstr(warning, "re-split as asked"));
  data_free(later);
  remove(file);
  /* another class list is another task */
  ModelSpec other = model_spec_default("cnn", 1, 28, 28, 2);
  other.depth = 2;
  other.class_names[0] = strdup("p"), other.class_names[1] = strdup("tumour");
  Net *wrong = model_build(&other, 1, &err);
  model_spec_free(&other);
  net_set_data_record(wrong, record);
  later = data_load_for_model(root, wrong, NULL, warning, sizeof warning, &err);
  assert_null(later);
  assert_non_null(strstr(err.msg, "class 1 is 'q'"));
  check = (DataCheck){.allow_mismatch = 1};
  later = data_load_for_model(root, wrong, &check, warning, sizeof warning, &err);
  assert_non_null(later);
  data_free(later);
  net_free(wrong);
  net_free(net);
  data_free(train_view);
}

static void write_idx_gz(const char *path, int ndim, const uint32_t *dims, int truncate) {
  gzFile f = gzopen(path, "wb");
  uint8_t head[16] = {0, 0, 8, (uint8_t)ndim};
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    head[4 + 4 * i] = (uint8_t)(dims[i] >> 24), head[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
    head[6 + 4 * i] = (uint8_t)(dims[i] >> 8), head[7 + 4 * i] = (uint8_t)dims[i];
    count *= dims[i];
  }
  gzwrite(f, head, 4 + 4 * ndim);
  for (size_t i = 0; i < (truncate ? count / 2 : count); i++)
    gzputc(f, (int)(ndim == 1 ? i % 10 : i % 256));
  gzclose(f);
}

static void test_idx(void **state) {
  (void)state;
  char root[300], path[400];
  in_dir(root, sizeof root, "idx");
  mkdir(root, 0755);
  const uint32_t train_im[3] = {60000, 2, 2}, train_lb[1] = {60000}, test_im[3] = {100, 2, 2},
                 test_lb[1] = {100};
  snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", root);
  write_idx_gz(path, 3, train_im, 0);
  snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", root);
  write_idx_gz(path, 1, train_lb, 0);
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", root);
  write_idx_gz(path, 3, test_im, 0);
  snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", root);
  write_idx_gz(path, 1, test_lb, 0);
  MrError err = {0};
  DataSplits *d = data_load(root, NULL, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->split[SPLIT_TRAIN].n, 54000);
  assert_int_equal(d->split[SPLIT_VAL].n, 6000);
  assert_int_equal(d->split[SPLIT_TEST].n, 100);
  assert_int_equal(d->n_classes, 10);
  assert_int_equal(d->split[SPLIT_TEST].labels[7], 7);
  assert_float_equal(d->split[SPLIT_TEST].images[5], 5 / 255.0f, 1e-7);
  data_free(d);
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", root);
  write_idx_gz(path, 3, test_im, 1);
  expect_load_error(root, "truncated");
}

static void test_fashion_mnist_package(void **state) {
  (void)state;
  if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0) {
    print_message("skipped: Debian's dataset-fashion-mnist is not installed\n");
    skip();
  }
  MrError err = {0};
  DataSplits *d = data_load("fashion-mnist", NULL, &err);
  if (!d) fail_msg("%s", err.msg);
  assert_int_equal(d->split[SPLIT_TEST].n, 10000);
  assert_string_equal(d->class_names[9], "Ankle boot");
  data_free(d);
}

static void test_phantom(void **state) {
  (void)state;
  MrError err = {0};
  DataSplits *a = phantom_generate(64, 100, 9, &err), *b = phantom_generate(64, 100, 9, &err);
  DataSplits *c = phantom_generate(64, 100, 10, &err);
  assert_non_null(a);
  const Dataset *ta = &a->split[SPLIT_TRAIN];
  int malignant = 0;
  for (int i = 0; i < ta->n; i++) malignant += ta->labels[i];
  assert_int_equal(malignant * 2, ta->n); /* balanced */
  for (size_t i = 0; i < (size_t)ta->n * 64 * 64; i++)
    assert_true(ta->images[i] >= 0 && ta->images[i] <= 1);
  assert_memory_equal(ta->images, b->split[SPLIT_TRAIN].images, sizeof(float) * ta->n * 64 * 64);
  assert_true(max_abs_diff(ta->images, c->split[SPLIT_TRAIN].images, (size_t)ta->n * 64 * 64) >
              0.1);
  assert_null(phantom_generate(30, 100, 1, &err));
  assert_non_null(strstr(err.msg, "28 or 64"));
  data_free(a), data_free(b), data_free(c);
}

static void test_resize_and_augment(void **state) {
  (void)state;
  Dataset d = {0};
  assert_int_equal(dataset_alloc(&d, 2, 1, 40, 40, NULL), STATUS_OK);
  for (int i = 0; i < 2 * 1600; i++) d.images[i] = 0.25f;
  assert_int_equal(dataset_resize(&d, 28, 28, NULL), STATUS_OK); /* down: area */
  for (int i = 0; i < 2 * 784; i++) assert_float_equal(d.images[i], 0.25f, 1e-6);
  assert_int_equal(dataset_resize(&d, 64, 64, NULL), STATUS_OK); /* up: bilinear */
  for (int i = 0; i < 2 * 4096; i++) assert_float_equal(d.images[i], 0.25f, 1e-6);
  free(d.images), free(d.labels);
  /* augmentation keeps [0,1], is seeded, and with no rotation only flips */
  float img[3 * 9], scratch[3 * 9], copy[3 * 9];
  for (int i = 0; i < 27; i++) img[i] = (float)i / 26;
  memcpy(copy, img, sizeof img);
  Rng r1, r2;
  rng_seed(&r1, 4), rng_seed(&r2, 4);
  augment_image(img, scratch, 3, 3, 3, 0.0f, &r1);
  float sum = 0, sum0 = 0;
  for (int i = 0; i < 27; i++) sum += img[i], sum0 += copy[i];
  assert_float_equal(sum, sum0, 1e-5); /* a permutation of the pixels */
  augment_image(copy, scratch, 3, 3, 3, 0.0f, &r2);
  assert_memory_equal(img, copy, sizeof img);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_npz_round_trip),
      cmocka_unit_test(test_npz_malformed),
      cmocka_unit_test(test_image_folder),
      cmocka_unit_test(test_idx),
      cmocka_unit_test(test_fashion_mnist_package),
      cmocka_unit_test(test_phantom),
      cmocka_unit_test(test_resize_and_augment),
      cmocka_unit_test(test_png_16bit_values),
      cmocka_unit_test(test_image_size_limit),
      cmocka_unit_test(test_fit_modes),
      cmocka_unit_test(test_unlabelled_folder),
      cmocka_unit_test(test_manifest_and_split_file),
      cmocka_unit_test(test_split_recorded_in_model),
  };
  return cmocka_run_group_tests_name("data", tests, setup, teardown);
}
