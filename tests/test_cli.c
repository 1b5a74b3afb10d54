/* The command-line contract: usage errors exit 2, runtime errors exit 1 with
 * a message naming the file and the problem, and the commands work end to end
 * on a small phantom. Runs the binary named by MEDROBUST_BIN (make test sets it). */
#include <png.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char dir[256];
static const char *bin;

static int setup(void **state) {
  (void)state;
  bin = getenv("MEDROBUST_BIN");
  if (!bin) bin = "build/medrobust";
  return make_temp_dir(dir, sizeof dir, "cli");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

/* Runs `medrobust ARGS`, capturing stdout+stderr into out; returns the exit code. */
static int run(char *out, size_t n, const char *fmt, ...) {
  char args[2048], cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
  FILE *p = popen(cmd, "r");
  size_t got = p ? fread(out, 1, n - 1, p) : 0;
  out[got] = 0;
  int status = p ? pclose(p) : -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The file's first n-1 bytes into out, NUL-terminated. */
static void slurp(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("%s: cannot open", path);
  const size_t got = fread(out, 1, n - 1, f);
  out[got] = 0;
  fclose(f);
}

static char page_text[1 << 22]; /* reports embed their images: megabytes */

static void expect(int code, const char *needle, const char *args) {
  char out[16384];
  int rc = run(out, sizeof out, "%s", args);
  if (rc != code || (needle && !strstr(out, needle)))
    fail_msg("'medrobust %s' exited %d (want %d), output lacks '%s':\n%s", args, rc, code,
             needle ? needle : "", out);
}

static void test_usage_errors(void **state) {
  (void)state;
  expect(2, "usage", "");
  expect(2, "unknown command 'nosuch'", "nosuch");
  expect(2, "unknown option '--bogus'", "models --bogus");
  expect(2, "--epochs expects", "train --epochs many --data x --out y");
  expect(2, "--data and --out are required", "train --epochs 3");
  expect(2, "--block-layers '2,x'", "train --model densenet --block-layers 2,x --data x --out y");
  expect(2, "--decoder-up must be one of",
         "train --model unet --decoder-up sideways --data x --out y");
  expect(2, "usage: medrobust info", "info");
  /* getopt_long's --name=value spelling, everywhere the table parses */
  expect(2, "--epochs expects", "train --epochs=many --data x --out y");
  expect(2, "unknown option '--bogus'", "train --bogus=1");
  expect(2, "--quiet takes no value", "train --quiet=yes --data x --out y");
  expect(0, "input 3x64x64, 2 classes", "models --size=64 --channels=3");
  expect(0, "input 1x32x32", "--threads=1 models --size 32");
  expect(0, "medrobust " MEDROBUST_VERSION, "--version");
  /* one name for one thing: --adv-iters as --iters elsewhere, the old spelling still works */
  expect(2, "--adv-iters expects", "train --adv-iters=0 --data x --out y");
  expect(2, "--adv-steps expects", "train --adv-steps 0 --data x --out y");
  expect(0, "--val-iters N", "train --help");
  expect(2, "unknown model 'vgg99'", "train --data x --out y --model vgg99");
  expect(2, "--optim must be one of", "train --data x --out y --optim rmsprop");
  expect(2, "--split must be", "evaluate --model m --data d --split everything");
  expect(2, "--size must be 28 or 64", "data phantom --out x.npz --size 32");
  expect(2, "--threads expects", "--threads 0 models");
  expect(2, "unknown attack 'nosuch'", "eval --model m --data d --out o --attacks pgd,nosuch");
  expect(2, "--eps '-0.1' must be a number in [0, 1]",
         "eval --model m --data d --out o --eps 0.01,-0.1");
  expect(2, "--attack must be fgsm, bim, pgd, mifgsm (bisection) or fmn",
         "triage --model m --data d --out o --attack cw");
  expect(2, "which folder", "report");
  expect(2, "--models needs at least two files", "compare --models a --data d --out o");
  expect(2, "--adv must be one of", "train --data x --out y --adv madry");
  expect(2, "--attack must be a bounded attack", "saliency --model m --data d --out o --attack cw");
  expect(2, "--adv-ratio expects a number in [0, 1]", "train --data x --out y --adv-ratio 1.5");
  expect(0, "--epochs", "train --help");
  expect(0, "(default 10)", "train --help");
  expect(0, "usage: medrobust evaluate", "evaluate --help");
}

/* Every malformed input a hostile or careless user gives, against real files: exit 2 with
 * a message naming the option, before any work (nothing written), or exit 1 for a file
 * that is not what it claims. @D is a data set, @M a model, @O a fresh output path. */
static void test_malformed_inputs(void **state) {
  (void)state;
  char data[300], model[300], args[2048];
  snprintf(data, sizeof data, "%s/bad-inputs.npz", dir);
  snprintf(model, sizeof model, "%s/bad-inputs.safetensors", dir);
  snprintf(args, sizeof args, "data phantom --n 20 --out %s", data);
  expect(0, NULL, args);
  MrError err = {0};
  ModelSpec spec = model_spec_default("cnn", 1, 28, 28, 2);
  Net *net = model_build(&spec, 1, &err);
  model_spec_free(&spec);
  assert_int_equal(safetensors_save_net(net, model, &err), STATUS_OK);
  net_free(net);
  static const struct {
    int code;
    const char *args, *needle;
  } rows[] = {
      {2, "eval --model @M --data @D --out @O --bogus", "unknown option '--bogus'"},
      {2, "eval --model @M --data @D --out", "--out needs a value"},
      {2, "eval --model @M --data @D --out @O --eps -1", "--eps '-1' must be a number in [0, 1]"},
      {2, "eval --model @M --data @D --out @O --eps nan", "--eps 'nan' must be a number"},
      {2, "eval --model @M --data @D --out @O --eps 1e9", "--eps '1e9' must be a number in [0, 1]"},
      {2, "eval --model @M --data @D --out @O --eps ''", "--eps '' lists no value"},
      {2, "eval --model @M --data @D --out @O --norm l2 --eps 1e9", "[0, 10000] for L2"},
      {2, "eval --model @M --data @D --out @O --attacks pgd,dag", "through --dag A,B,C"},
      {2, "attack --model @M --data @D --out @O --eps 1e9", "--eps '1e9' must be a number"},
      {2, "compare --models @M,@M --data @D --out @O --eps 5", "--eps '5' must be a number"},
      {2, "train --model cnn --data @D --out @O --epochs 0", "--epochs expects"},
      {2, "train --model cnn --data @D --out @O --batch 0", "--batch expects"},
      {2, "--threads -3 train --model cnn --data @D --out @O", "medrobust: --threads expects"},
      {2, "train --model cnn --data @D --out @D", "--out " /* ... is also --data */},
      {2, "train --model cnn --data @D --out @O --checkpoint @O", "--checkpoint"},
      {2, "train --model cnn --data @D --init @M --out @M", "is also --init"},
      {2, "attack --model @M --data @D --out @D", "is also --data; refusing to overwrite it"},
      {2, "attack --model @M --data @D --out @M", "is also --model"},
      {2, "predict --model @M --data @D --out @M", "is also --model"},
      {2, "export --model @M --out @M", "is also --model"},
      {2, "import @M --out @M", "is also the argument"},
      {2, "data phantom --out @D.dir", "is a directory; it names a file to write"},
      {2, "train --model cnn --data @D --out @D.dir", "is a directory"},
      {2, "eval --model @M --data @D --out @D", "is a file; it names a folder"},
      {2, "triage --model @M --data @D --out @M", "is a file; it names a folder"},
      {2, "triage --model @M --data @D --out @O --eps-max 0.1,0.2", "--eps-max takes one value"},
      {2, "triage --model @M --data @D --out @O --tol 0.1 --eps-max 0.05",
       "smaller than --eps-max"},
      {2, "attack --model @M --data @D --out @O --eps 0.1,0.2", "--eps takes one value"},
      {1, "evaluate --model @D.dir --data @D", "not a readable file"},
      {1, "--max-file-gb 0.000001 info @M", "raise with medrobust --max-file-gb"},
      {1, "--max-file-gb 0.000001 data info @D", "over the 1073 accepted"},
      {2, "--max-megapixels 0 models", "--max-megapixels expects"},
      {2, "--max-inflate-ratio -1 models", "--max-inflate-ratio expects"},
  };
  char dirpath[320];
  snprintf(dirpath, sizeof dirpath, "%s.dir", data);
  assert_int_equal(mkdir(dirpath, 0755), 0);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char out[320];
    snprintf(out, sizeof out, "%s/fresh-%zu", dir, i);
    /* substitute @D, @M, @O */
    size_t n = 0;
    for (const char *c = rows[i].args; *c && n < sizeof args - 400; c++) {
      if (c[0] == '@' && (c[1] == 'D' || c[1] == 'M' || c[1] == 'O')) {
        n += (size_t)snprintf(args + n, sizeof args - n, "%s",
                              c[1] == 'D'   ? data
                              : c[1] == 'M' ? model
                                            : out);
        c++;
      } else {
        args[n++] = *c;
      }
    }
    args[n] = 0;
    expect(rows[i].code, rows[i].needle, args);
    /* refused before any work: the fresh output was never made */
    assert_int_equal(access(out, F_OK), -1);
  }
  /* and the inputs it refused to overwrite are intact */
  snprintf(args, sizeof args, "data info %s", data);
  expect(0, "2 classes: 0=benign 1=malignant", args);
  snprintf(args, sizeof args, "info %s", model);
  expect(0, "cnn", args);
}

static void write_grey_png(const char *path, int size, int bright, int seed);

/* How many files and folders are under path (itself included). */
static int count_entries(const char *path) {
  char cmd[600], out[64];
  snprintf(cmd, sizeof cmd, "find '%s' | wc -l", path);
  FILE *p = popen(cmd, "r");
  const int ok = p && fgets(out, sizeof out, p) != NULL;
  if (p) pclose(p);
  return ok ? atoi(out) : -1;
}

/* Reports show class names, file names and JSON strings a stranger wrote: every one is
 * escaped, images come only from relative paths inside the report's folder, and nothing is
 * written outside --out. */
static void test_report_escapes_hostile_names(void **state) {
  (void)state;
  char root[320], path[700], args[2048];
  snprintf(root, sizeof root, "%s/hostile", dir);
  assert_int_equal(mkdir(root, 0755), 0);
  static const char *const classes[2] = {"benign<script>alert(1)<", "malign'\"><b>x"};
  for (int c = 0; c < 2; c++) {
    snprintf(path, sizeof path, "%s/%s", root, classes[c]);
    assert_int_equal(mkdir(path, 0755), 0);
    for (int i = 0; i < 12; i++) {
      snprintf(path, sizeof path, "%s/%s/img<i>'%d\".png", root, classes[c], i);
      write_grey_png(path, 32, c, i);
    }
  }
  const int before = count_entries(dir);
  snprintf(args, sizeof args,
           "train --model cnn --depth 1 --base 4 --size 32 --data '%s' --epochs 1 --quiet --out "
           "'%s/hostile.safetensors'",
           root, dir);
  expect(0, NULL, args);
  snprintf(args, sizeof args,
           "eval --model '%s/hostile.safetensors' --data '%s' --attacks fgsm --eps 0.01 "
           "--no-noise --examples 2 --quiet --out '%s/hostile-eval'",
           dir, root, dir);
  expect(0, NULL, args);
  /* the model, its checkpoint and the eval folder's files: nothing beside them */
  char ev[400];
  snprintf(ev, sizeof ev, "%s/hostile-eval", dir);
  assert_int_equal(count_entries(dir), before + 2 + count_entries(ev));
  snprintf(path, sizeof path, "%s/report.html", ev);
  slurp(path, page_text, sizeof page_text);
  assert_null(strstr(page_text, "<script>alert"));
  assert_null(strstr(page_text, "<b>x"));
  assert_null(strstr(page_text, "<i>'"));
  assert_non_null(strstr(page_text, "benign&lt;script&gt;alert(1)&lt;"));

  /* hostile JSON: strings with markup and images from elsewhere */
  char odd[400];
  snprintf(odd, sizeof odd, "%s/hostile-json", dir);
  assert_int_equal(mkdir(odd, 0755), 0);
  snprintf(path, sizeof path, "%s/results.json", odd);
  FILE *f = fopen(path, "w");
  fputs(
      "{\"model\":\"m<script>alert(2)</script>\",\"data\":\"d\",\"split\":\"<b>SPLIT\",\"n\":4,"
      "\"training\":{\"adversarial\":{\"kind\":\"<script>alert(3)</script>\"}},"
      "\"rows\":[{\"attack\":\"<img src=x onerror=alert(4)>\",\"norm\":\"'><svg onload=alert(5)>\","
      "\"eps\":0.01,\"accuracy\":0.5,\"balanced_accuracy\":0.5}],"
      "\"noise\":[{\"noise\":\"<script>alert(6)</script>\",\"level\":1}]}",
      f);
  fclose(f);
  snprintf(path, sizeof path, "%s/examples.json", odd);
  f = fopen(path, "w");
  fputs(
      "{\"attack\":\"<b>ATTACK\",\"norm\":\"linf\",\"eps\":0.01,\"bits\":8,\"examples\":[{"
      "\"index\":1,\"file\":\"<i>FILE\",\"flipped\":true,\"label\":\"<b>LABEL\","
      "\"clean_prediction\":\"<b>PRED\",\"adversarial_prediction\":\"<b>ADV\","
      "\"clean_png\":\"http://evil.example/x.png\",\"adversarial_png\":\"../../../etc/x.png\","
      "\"difference_png\":\"/etc/x.png\"}]}",
      f);
  fclose(f);
  snprintf(args, sizeof args, "report '%s'", odd);
  expect(0, "report.html", args);
  snprintf(path, sizeof path, "%s/report.html", odd);
  slurp(path, page_text, sizeof page_text);
  static const char *const live[] = {"<script>alert", "<img src=x",   "<svg onload", "<b>SPLIT",
                                     "<b>ATTACK",     "<i>FILE",      "<b>LABEL",    "<b>PRED",
                                     "<b>ADV",        "evil.example", "../../",      "/etc/x.png"};
  for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
    if (strstr(page_text, live[i])) fail_msg("report.html holds '%s' unescaped", live[i]);
}

static void test_runtime_errors(void **state) {
  (void)state;
  char args[1024], path[400];
  expect(1, "/nonexistent/d.npz", "data info /nonexistent/d.npz");
  snprintf(path, sizeof path, "%s/not-a-model.safetensors", dir);
  FILE *f = fopen(path, "w");
  fputs("garbage", f);
  fclose(f);
  snprintf(args, sizeof args, "evaluate --model %s --data x.npz", path);
  expect(1, "too short for a safetensors file", args);
  snprintf(args, sizeof args, "train --data %s --out %s/m.safetensors", path, dir);
  expect(1, "expected a .npz file", args);

  /* a model file that lies about its graph: exit 1 naming the file, the op and the problem */
  MrError err = {0};
  ModelSpec spec = model_spec_default("resnet8", 1, 28, 28, 2);
  Net *net = model_build(&spec, 1, &err);
  model_spec_free(&spec);
  assert_non_null(net);
  snprintf(path, sizeof path, "%s/lying.safetensors", dir);
  assert_int_equal(safetensors_save_net(net, path, &err), STATUS_OK);
  net_free(net);
  FILE *m = fopen(path, "r+b");
  static char bytes[1 << 20];
  const size_t n = fread(bytes, 1, sizeof bytes, m);
  char *op = memmem(bytes, n, "conv2d\\\"", 8); /* the first op's kind, inside the escaped graph */
  assert_non_null(op);
  memcpy(op, "warp2d", 6);
  rewind(m);
  assert_int_equal(fwrite(bytes, 1, n, m), n);
  fclose(m);
  snprintf(args, sizeof args, "info %s", path);
  expect(1, "graph op 0: unknown op \"warp2d\"", args);
  snprintf(args, sizeof args, "evaluate --model %s --data x.npz", path);
  expect(1, "lying.safetensors: graph op 0", args);

  /* a report from JSON of the wrong shape renders what it can, never crashes */
  static const char *const odd[][2] = {
      {"compare.json", "{\"models\":{\"a\":1},\"transfer\":{\"accuracy\":[[1,\"x\"],5]}}"},
      {"embedding.json", "{\"points\":[{\"x\":1},{\"prediction\":1e300}],\"classes\":[1]}"},
      {"saliency.json", "{\"images\":[{\"label\":3},7]}"},
      {"results.json", "{\"rows\":[{\"eps\":\"big\"}],\"training\":[1,2]}"}};
  char odd_dir[300];
  snprintf(odd_dir, sizeof odd_dir, "%s/odd", dir);
  assert_int_equal(mkdir(odd_dir, 0755), 0);
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", odd_dir, odd[i][0]);
    FILE *j = fopen(path, "w");
    fputs(odd[i][1], j);
    fclose(j);
  }
  snprintf(args, sizeof args, "report %s", odd_dir);
  expect(0, "report.html", args);
}

static int csv_column(const char *path, const char *name, char rows[][96], int max);

static void test_end_to_end(void **state) {
  (void)state;
  char args[2048], out[16384];
  snprintf(args, sizeof args, "data phantom --out %s/p.npz --n 400 --seed 2", dir);
  expect(0, "wrote", args);
  snprintf(args, sizeof args, "data info %s/p.npz", dir);
  expect(0, "benign", args);
  snprintf(args, sizeof args,
           "--threads 2 train --data %s/p.npz --model cnn --depth 3 --epochs 2 --out "
           "%s/m.safetensors --quiet",
           dir, dir);
  expect(0, "test acc", args);
  snprintf(args, sizeof args, "evaluate --model %s/m.safetensors --data %s/p.npz --json", dir, dir);
  int rc = run(out, sizeof out, "%s", args);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "\"balanced_accuracy\""));
  assert_non_null(strstr(out, "\"confusion\""));
  snprintf(args, sizeof args, "predict --model %s/m.safetensors --data %s/p.npz --out %s/p.csv",
           dir, dir, dir);
  expect(0, "wrote 80 predictions", args);
  char csv[300];
  snprintf(csv, sizeof csv, "%s/p.csv", dir);
  FILE *f = fopen(csv, "r");
  assert_non_null(f);
  char line[256];
  assert_non_null(fgets(line, sizeof line, f));
  assert_string_equal(line, "file,id,true,predicted,confidence,p_benign,p_malignant\n");
  assert_non_null(fgets(line, sizeof line, f));
  assert_true(strncmp(line, "test_images[0],", 15) == 0);
  int rows = 1;
  while (fgets(line, sizeof line, f)) rows++;
  fclose(f);
  assert_int_equal(rows, 80);
  expect(0, "resnet20", "models --size 28");

  /* randomized smoothing: a model trained under noise, certified (twice, at two batch sizes:
   * the same certificates), its smoothed predictions, and the report's section */
  snprintf(args, sizeof args,
           "--threads 2 train --data %s/p.npz --model cnn --depth 3 --epochs 2 --noise-sd 0.12 "
           "--out %s/n.safetensors --quiet",
           dir, dir);
  expect(0, "test acc", args);
  expect(2, "ascending", "certify --model x --data y --out z --radii 0.5,0.1");
  for (int pass = 0; pass < 2; pass++) {
    snprintf(args, sizeof args,
             "certify --model %s/n.safetensors --data %s/p.npz --sigma 0.12 --n0 20 --n 300 "
             "--limit 12 --radii 0,0.05,0.1 --pgd-steps 5 --batch %d --out %s/cert%d --quiet",
             dir, dir, pass ? 7 : 64, dir, pass);
    expect(0, "certified (smoothed)", args);
  }
  char cert_rows[2][16][96], cert_csv[300], cert_path[400];
  for (int pass = 0; pass < 2; pass++) {
    snprintf(cert_csv, sizeof cert_csv, "%s/cert%d/certify.csv", dir, pass);
    assert_int_equal(csv_column(cert_csv, "p_lower", cert_rows[pass], 16), 12);
  }
  for (int i = 0; i < 12; i++) assert_string_equal(cert_rows[0][i], cert_rows[1][i]);
  snprintf(cert_path, sizeof cert_path, "%s/cert0/report.html", dir);
  slurp(cert_path, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "Certified robustness (randomized smoothing)"));
  snprintf(cert_path, sizeof cert_path, "%s/cert0/certify.json", dir);
  slurp(cert_path, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "\"pgd_l2_accuracy\""));
  snprintf(args, sizeof args,
           "predict --model %s/n.safetensors --data %s/p.npz --smooth 0.12 --n 200 --out "
           "%s/ps.csv --quiet",
           dir, dir, dir);
  expect(0, "wrote 80 predictions", args);
  snprintf(cert_csv, sizeof cert_csv, "%s/ps.csv", dir);
  assert_int_equal(csv_column(cert_csv, "smoothed", cert_rows[0], 16), 16);
  for (int i = 0; i < 16; i++)
    assert_true(!strcmp(cert_rows[0][i], "benign") || !strcmp(cert_rows[0][i], "malignant") ||
                !strcmp(cert_rows[0][i], "abstain"));

  /* attacks, sweep, triage and the report on the same model */
  snprintf(args, sizeof args,
           "attack --model %s/m.safetensors --data %s/p.npz --eps 4/255 --limit 20 --out "
           "%s/adv.npz --png %s/png --png-count 2",
           dir, dir, dir, dir);
  expect(0, "stored at   8 bits", args);
  snprintf(args, sizeof args, "evaluate --model %s/m.safetensors --data %s/adv.npz", dir, dir);
  expect(0, "(test, 20 images)", args);
  snprintf(args, sizeof args,
           "eval --model %s/m.safetensors --data %s/p.npz --attacks fgsm,pgd --eps 0.004,0.02 "
           "--limit 24 --out %s/rep --quiet",
           dir, dir, dir);
  expect(0, "self-checks", args);
  snprintf(args, sizeof args,
           "triage --model %s/m.safetensors --data %s/p.npz --limit 24 --out %s/rep --quiet", dir,
           dir, dir);
  expect(0, "without the", args);
  snprintf(args, sizeof args, "report %s/rep", dir);
  expect(0, "report.html", args);
  char html[400];
  snprintf(html, sizeof html, "%s/rep/report.html", dir);
  slurp(html, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "<svg"));
  assert_non_null(strstr(page_text, "Self-checks"));

  /* a hardened model beside the standard one */
  snprintf(args, sizeof args,
           "--threads 2 train --data %s/p.npz --model cnn --depth 3 --epochs 2 --adv fgsm-rs "
           "--eps 0.01 --adv-ratio 0.5 --out %s/h.safetensors --quiet",
           dir, dir);
  expect(0, "(adversarial share 0.500)", args);
  snprintf(args, sizeof args,
           "compare --models %s/m.safetensors,%s/h.safetensors --data %s/p.npz --attacks pgd "
           "--eps 0.004 --limit 24 --out %s/cmp --quiet",
           dir, dir, dir, dir);
  expect(0, "source \\ target", args);
  snprintf(html, sizeof html, "%s/cmp/report.html", dir);
  slurp(html, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "Transfer (black-box) matrix"));
  assert_non_null(
      strstr(page_text, "adversarial: fgsm-rs linf eps 0.01, 50% requested, 0.500 counted"));

  snprintf(args, sizeof args,
           "saliency --model %s/h.safetensors --data %s/p.npz --count 2 --samples 4 --embed 40 "
           "--out %s/sal",
           dir, dir, dir);
  expect(0, "saliency maps of 2 images and a 40-image embedding", args);
  snprintf(html, sizeof html, "%s/sal/report.html", dir);
  slurp(html, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "Where the model looks"));
  snprintf(html, sizeof html, "%s/sal/saliency/001_adversarial_smoothgrad.png", dir);
  assert_int_equal(access(html, R_OK), 0);
  assert_non_null(strstr(page_text, "Feature space: clean vs attacked"));
}

/* The rows of CSV column `name` (no quoted commas in these tests). */
static int csv_column(const char *path, const char *name, char rows[][96], int max) {
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("%s: cannot open", path);
  char line[8192];
  int col = -1, n = 0;
  if (fgets(line, sizeof line, f)) {
    char *tok = strtok(line, ",\n");
    for (int c = 0; tok; c++, tok = strtok(NULL, ",\n"))
      if (strcmp(tok, name) == 0) col = c;
  }
  if (col < 0) fail_msg("%s has no column %s", path, name);
  while (n < max && fgets(line, sizeof line, f)) {
    char *p = line;
    for (int c = 0; c < col && p; c++) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
    if (!p) continue;
    const size_t len = strcspn(p, ",\n");
    snprintf(rows[n++], 96, "%.*s", (int)len, p);
  }
  fclose(f);
  return n;
}

static void write_grey_png(const char *path, int size, int bright, int seed) {
  png_image p;
  memset(&p, 0, sizeof p);
  p.version = PNG_IMAGE_VERSION;
  p.width = p.height = (png_uint_32)size;
  p.format = PNG_FORMAT_GRAY;
  uint8_t *px = malloc((size_t)size * size);
  for (int i = 0; i < size * size; i++)
    px[i] = (uint8_t)((bright ? 160 : 60) + (i * 37 + seed * 11) % 50);
  if (!png_image_write_to_file(&p, path, 0, px, 0, NULL)) fail_msg("%s: cannot write", path);
  free(px);
}

/* An image folder's split is decided at training and never moves: eval,
 * triage, predict and attack, with any --seed, see exactly the test split
 * train made, every per-image output names its file, and a folder whose
 * files changed is refused unless a re-split is asked for. */
static void test_split_never_moves(void **state) {
  (void)state;
  char root[300], cls[320], file[400], args[2048], out[16384];
  snprintf(root, sizeof root, "%s/folder", dir);
  mkdir(root, 0755);
  for (int c = 0; c < 2; c++) {
    snprintf(cls, sizeof cls, "%s/%s", root, c ? "tumour" : "normal");
    mkdir(cls, 0755);
    for (int i = 0; i < 20; i++) {
      snprintf(file, sizeof file, "%s/scan%02d.png", cls, i);
      write_grey_png(file, 28 + (i % 3) * 4, c, i);
    }
  }
  snprintf(file, sizeof file, "%s/notes.txt", root);
  FILE *f = fopen(file, "w");
  fputs("a file that is not an image", f);
  fclose(f);
  snprintf(args, sizeof args,
           "--threads 2 train --data %s --model cnn --depth 2 --size 28 --epochs 1 --seed 4 --out "
           "%s/f.safetensors --quiet",
           root, dir);
  expect(0, "skipped 1 file that is not a PNG, JPEG, DICOM or NIfTI image (notes.txt)", args);
  snprintf(args, sizeof args, "data info %s --size 28 --list %s/split.csv", root, dir);
  expect(0, "split 70/10/20 seed 1", args);
  static char files[64][96], splits[64][96], got[64][96];
  char path[400];
  snprintf(path, sizeof path, "%s/split.csv", dir);
  const int n = csv_column(path, "path", files, 64);
  assert_int_equal(csv_column(path, "split", splits, 64), n);
  assert_int_equal(n, 40);
  int n_test = 0;
  for (int i = 0; i < n; i++) n_test += strcmp(splits[i], "test") == 0;
  /* every command, whatever its --seed, reads the training-time test split */
  struct {
    const char *args, *csv, *column;
  } runs[] = {
      {"predict --model %s/f.safetensors --data %s --out %s/p.csv", "p.csv", "file"},
      {"triage --model %s/f.safetensors --data %s --seed 9 --out %s/t --quiet", "t/triage.csv",
       "file"},
      {"eval --model %s/f.safetensors --data %s --seed 9 --attacks fgsm --eps 0.01 --no-noise "
       "--no-checks --examples 0 --quiet --out %s/e",
       "e/images.csv", "file"},
      {"attack --model %s/f.safetensors --data %s --seed 9 --eps 0.01 --out %s/a.npz", "a.npz.csv",
       "file"},
  };
  for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, runs[r].args, dir, root, dir);
    expect(0, NULL, cmd);
    snprintf(path, sizeof path, "%s/%s", dir, runs[r].csv);
    const int m = csv_column(path, runs[r].column, got, 64);
    assert_int_equal(m, n_test);
    for (int i = 0; i < m; i++) {
      int found = -1;
      for (int j = 0; j < n; j++)
        if (strcmp(got[i], files[j]) == 0) found = j;
      if (found < 0 || strcmp(splits[found], "test") != 0)
        fail_msg("%s lists %s, which is not in the training-time test split", runs[r].csv, got[i]);
    }
  }
  /* a changed folder would move the split: refused, before any work */
  snprintf(file, sizeof file, "%s/normal/late.png", root);
  write_grey_png(file, 30, 0, 99);
  snprintf(args, sizeof args, "evaluate --model %s/f.safetensors --data %s", dir, root);
  expect(1, "other files than the model was trained on (40 then, 41 now", args);
  snprintf(args, sizeof args, "evaluate --model %s/f.safetensors --data %s --split-seed 1", dir,
           root);
  expect(0, "warning: ", args);
  remove(file);
  /* an unlabelled folder: predict and triage name each file and its answer */
  char unl[300];
  snprintf(unl, sizeof unl, "%s/unlabelled", dir);
  mkdir(unl, 0755);
  for (int i = 0; i < 6; i++) {
    snprintf(file, sizeof file, "%s/new%d.png", unl, i);
    write_grey_png(file, 28, i % 2, 50 + i);
  }
  snprintf(args, sizeof args, "predict --model %s/f.safetensors --data %s --out %s/u.csv", dir, unl,
           dir);
  expect(0, "wrote 6 predictions", args);
  snprintf(path, sizeof path, "%s/u.csv", dir);
  assert_int_equal(csv_column(path, "file", got, 64), 6);
  assert_string_equal(got[0], "new0.png");
  snprintf(args, sizeof args, "triage --model %s/f.safetensors --data %s --out %s/ut --quiet", dir,
           unl, dir);
  expect(0, "unlabelled images: ranked by how small a change flips them", args);
  snprintf(args, sizeof args, "evaluate --model %s/f.safetensors --data %s", dir, unl);
  expect(1, "has no labels", args);
  /* another task's data: class names differ */
  snprintf(args, sizeof args, "evaluate --model %s/m.safetensors --data %s", dir, root);
  int rc = run(out, sizeof out, "%s", args);
  if (rc == 0) fail_msg("a phantom model accepted brain-like classes:\n%s", out);
  assert_non_null(strstr(out, "--allow-mismatch"));
}

/* A page that loads the report in a frame `w` px wide and judges its layout
 * in the browser: the verdict on the first screen, no page wider than the
 * window, every image decoded and at least 160 px wide, the headline naming
 * what it must. Chromium prints the verdict with --dump-dom. */
static const char *const layout_check =
    "<!DOCTYPE html><html><head><title>check</title></head><body><iframe id='f' "
    "src='report.html' style='width:%dpx;height:900px;border:0'></iframe><pre id='out'>pending"
    "</pre><script>document.getElementById('f').onload=function(){"
    "const d=this.contentDocument,w=this.clientWidth,bad=[];"
    "if(!d){document.getElementById('out').textContent='RESULT fail: no access';return;}"
    "const v=d.getElementById('verdict');"
    "if(!v)bad.push('no verdict');else if(v.getBoundingClientRect().top>200)"
    "bad.push('verdict below the first screen');"
    "if(v&&!/%s/.test(v.textContent))bad.push('verdict lacks %s');"
    "if(d.documentElement.scrollWidth>w+1)bad.push('page '+d.documentElement.scrollWidth+"
    "' px wide');let broken=0,small=0;for(const im of d.images){if(!im.complete||"
    "im.naturalWidth==0)broken++;if(im.getBoundingClientRect().width<159)small++;}"
    "if(%d&&!d.images.length)bad.push('no images');if(broken)bad.push(broken+' broken images');"
    "if(small)bad.push(small+' images under 160 px');"
    "document.getElementById('out').textContent='RESULT '+(bad.length?'fail: '+bad.join('; '):"
    "'ok')+' images='+d.images.length;};</script></body></html>";

static void check_layout(const char *report_dir, int width, const char *must, int images) {
  char page[600], cmd[2048], out[65536];
  snprintf(page, sizeof page, "%s/check.html", report_dir);
  FILE *f = fopen(page, "w");
  assert_non_null(f);
  fprintf(f, layout_check, width, must, must, images);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic "
           "--no-first-run --disable-background-networking --disable-component-update "
           "--disable-sync --allow-file-access-from-files --user-data-dir=%s/chrome "
           "--virtual-time-budget=15000 --dump-dom file://%s 2>/dev/null",
           dir, page);
  FILE *p = popen(cmd, "r");
  const size_t got = p ? fread(out, 1, sizeof out - 1, p) : 0;
  out[got] = 0;
  if (p) pclose(p);
  const char *result = strstr(out, "RESULT ");
  if (!result || strncmp(result, "RESULT ok", 9) != 0)
    fail_msg("%s at %d px: %.200s", report_dir, width, result ? result : "no result from chromium");
  print_message("  %s at %4d px: %.40s\n", strrchr(report_dir, '/') + 1, width, result);
  remove(page);
}

/* The reports render in a real browser (Debian's chromium, headless) and
 * read on a phone (420 px) and a desktop (1400 px); a single file with its
 * images embedded, no remote resources. */
/* The segmentation path end to end: phantom with masks, a small U-Net, eval
 * with DAG, compare with the transfer matrices, and the errors between tasks. */
static void test_segmentation_end_to_end(void **state) {
  (void)state;
  char out[65536], cmd[2048], path[512];
  expect(2, "--task must be classify or segment", "data phantom --task draw --out x.npz");
  snprintf(cmd, sizeof cmd, "data phantom --task segment --size 28 --n 300 --out %s/seg.npz", dir);
  expect(0, "masks background/benign/malignant", cmd);
  for (int m = 0; m < 2; m++) {
    snprintf(cmd, sizeof cmd,
             "train --data %s/seg.npz --model %s --depth 2 --base 8 --epochs 4 --lr 0.01 --out "
             "%s/%s.safetensors --quiet",
             dir, m ? "segnet" : "unet", dir, m ? "segnet" : "unet");
    expect(0, "test Dice", cmd);
  }
  /* the model file says how it was trained and on what */
  snprintf(cmd, sizeof cmd, "info %s/unet.safetensors", dir);
  expect(0, "val_dice", cmd);
  snprintf(cmd, sizeof cmd,
           "eval --model %s/unet.safetensors --data %s/seg.npz --attacks pgd --eps 0.004 "
           "--dag-iters 20 --limit 12 --examples 2 --quiet --out %s/segeval",
           dir, dir, dir);
  int rc = run(out, sizeof out, "%s", cmd);
  if (rc != 0 || !strstr(out, "dag-A") || !strstr(out, "paper 002 Table 1"))
    fail_msg("exit %d:\n%s", rc, out);
  snprintf(path, sizeof path, "%s/segeval/seg_results.json", dir);
  slurp(path, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "\"dag_target\""));
  assert_non_null(strstr(page_text, "\"table1\""));
  snprintf(path, sizeof path, "%s/segeval/report.html", dir);
  slurp(path, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "Paper 002 Table 1 (segmentation)"));
  assert_non_null(strstr(page_text, "ground truth"));
  snprintf(cmd, sizeof cmd,
           "compare --models %s/unet.safetensors,%s/segnet.safetensors --data %s/seg.npz "
           "--attacks fgsm --eps 0.004 --dag-iters 10 --limit 8 --quiet --out %s/segcmp",
           dir, dir, dir, dir);
  rc = run(out, sizeof out, "%s", cmd);
  if (rc != 0 || !strstr(out, "Table 2") || !strstr(out, "type C"))
    fail_msg("exit %d:\n%s", rc, out);
  snprintf(cmd, sizeof cmd,
           "triage --model %s/unet.safetensors --data %s/seg.npz --limit 6 --tol 1e-3 --quiet "
           "--out %s/segtriage",
           dir, dir, dir);
  expect(0, "without the 20% most fragile", cmd);
  snprintf(path, sizeof path, "%s/segtriage/report.html", dir);
  slurp(path, page_text, sizeof page_text);
  assert_non_null(strstr(page_text, "id='seg-triage'"));
  /* attack writes a segmentation set other models are scored on */
  snprintf(cmd, sizeof cmd,
           "attack --model %s/unet.safetensors --data %s/seg.npz --attack dag --dag-type C "
           "--iters 30 --limit 6 --out %s/advC.npz",
           dir, dir, dir);
  expect(0, "of the pixels show the target", cmd);
  snprintf(cmd, sizeof cmd,
           "eval --model %s/segnet.safetensors --data %s/advC.npz --attacks fgsm --eps 0.002 "
           "--dag none --no-noise --examples 0 --quiet --out %s/transfer",
           dir, dir, dir);
  expect(0, "6 images", cmd);
  snprintf(cmd, sizeof cmd,
           "attack --model %s/unet.safetensors --data %s/seg.npz --attack deepfool --out %s/x.npz",
           dir, dir, dir);
  expect(2, "takes fgsm, bim, pgd or dag", cmd);
  /* one task's model on the other task's data: refused before any work */
  snprintf(cmd, sizeof cmd, "data phantom --size 28 --n 100 --out %s/cls.npz", dir);
  expect(0, NULL, cmd);
  snprintf(cmd, sizeof cmd, "eval --model %s/unet.safetensors --data %s/cls.npz --out %s/x", dir,
           dir, dir);
  expect(1, "has no masks", cmd);
  snprintf(cmd, sizeof cmd, "train --data %s/seg.npz --model cnn --epochs 1 --out %s/c.safetensors",
           dir, dir);
  expect(1, "answers per image", cmd);
  snprintf(cmd, sizeof cmd,
           "compare --models %s/unet.safetensors,%s/c.safetensors --data %s/seg.npz --out %s/x",
           dir, dir, dir, dir);
  rc = run(out, sizeof out, "%s", cmd);
  assert_int_not_equal(rc, 0);
}

static void test_report_in_chromium(void **state) {
  (void)state;
  if (system("command -v chromium >/dev/null 2>&1") != 0) {
    print_message("skipped: Debian's chromium is not installed\n");
    skip();
  }
  char html[400];
  snprintf(html, sizeof html, "%s/rep/report.html", dir);
  if (access(html, R_OK) != 0) skip();
  slurp(html, page_text, sizeof page_text);
  assert_null(strstr(page_text, "src='http"));
  assert_non_null(strstr(page_text, "src='data:image/png;base64,"));
  struct {
    const char *sub, *must;
    int images;
  } reports[] = {{"rep", "Re-read", 1}, {"cmp", "Deploy", 0}, {"sal", "", 1}};
  for (size_t i = 0; i < sizeof reports / sizeof reports[0]; i++) {
    char rd[400];
    snprintf(rd, sizeof rd, "%s/%s", dir, reports[i].sub);
    if (strcmp(reports[i].sub, "sal") == 0) continue; /* saliency alone has no verdict */
    for (int w = 0; w < 2; w++)
      check_layout(rd, w ? 1400 : 420, reports[i].must, reports[i].images);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_usage_errors),
      cmocka_unit_test(test_malformed_inputs),
      cmocka_unit_test(test_runtime_errors),
      cmocka_unit_test(test_report_escapes_hostile_names),
      cmocka_unit_test(test_end_to_end),
      cmocka_unit_test(test_split_never_moves),
      cmocka_unit_test(test_report_in_chromium),
      cmocka_unit_test(test_segmentation_end_to_end),
  };
  return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
