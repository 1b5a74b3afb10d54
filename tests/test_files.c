/* Outputs are written whole or not at all (src/core/atomicfile.c): a write
 * that fails part-way (a full disk, simulated by a file-size limit on the
 * command, which needs no root and no mount) is an error saying why, leaves
 * no temporary file, and keeps the previous output byte for byte; a
 * temporary file a killed run left behind is removed by the next write of
 * the same target. */
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/data.h"
#include "testutil.h"

static char dir[64];

static int setup(void **state) {
  (void)state;
  return make_temp_dir(dir, sizeof dir, "files");
}

static int teardown(void **state) {
  (void)state;
  return remove_dir(dir);
}

/* Files in dir whose name holds ".tmp." */
static int temp_files(void) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
  if (d) closedir(d);
  return n;
}

static Net *small_net(void) {
  ModelSpec spec = model_spec_default("resnet8", 1, 28, 28, 2);
  Net *net = model_build(&spec, 1, NULL);
  model_spec_free(&spec);
  return net;
}

static Status write_model(const char *path, MrError *err) {
  Net *net = small_net();
  const Status s = safetensors_save_net(net, path, err);
  net_free(net);
  return s;
}

/* `medrobust ARGS` (@ is dir) with files limited to 4 KiB and SIGXFSZ ignored, so a write
 * fails with EFBIG as on a full disk (a child process: no root, no mount). Returns the exit
 * code; its output goes to dir/limited.txt. */
static int run_limited(const char *args) {
  const char *bin = getenv("MEDROBUST_BIN") ? getenv("MEDROBUST_BIN") : "build/medrobust";
  char expanded[1024], cmd[2048];
  size_t n = 0;
  for (const char *c = args; *c && n < sizeof expanded - 80; c++)
    n += *c == '@' ? (size_t)snprintf(expanded + n, sizeof expanded - n, "%s", dir)
                   : (expanded[n] = *c, 1);
  expanded[n] = 0;
  snprintf(cmd, sizeof cmd, "sh -c \"trap '' XFSZ; ulimit -f 8; exec %s %s\" > %s/limited.txt 2>&1",
           bin, expanded, dir);
  const int status = system(cmd);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* target (in dir) holds a good output; writing it again under the limit must exit 1 naming
 * it, leave no temporary file and keep the good output byte for byte. */
static void check_failed_write(const char *target, const char *args) {
  char path[128], out[4096] = "";
  snprintf(path, sizeof path, "%s/%s", dir, target);
  size_t before_len = 0, after_len = 0;
  uint8_t *before = read_all(path, &before_len);
  const int rc = run_limited(args);
  snprintf(out, sizeof out, "%s/limited.txt", dir);
  size_t msg_len = 0;
  char *msg = (char *)read_all(out, &msg_len);
  msg = realloc(msg, msg_len + 1);
  msg[msg_len] = 0;
  if (rc != 1 || !strstr(msg, target) || !strstr(msg, "write"))
    fail_msg("%s: exit %d, '%s'", target, rc, msg);
  uint8_t *after = read_all(path, &after_len);
  assert_int_equal(after_len, before_len);
  assert_memory_equal(after, before, before_len);
  assert_int_equal(temp_files(), 0);
  char *why = strstr(msg, "write"), *nl = strchr(why, '\n');
  if (nl) *nl = 0;
  print_message("  %-18s a write cut at 4 KiB: exit 1, \"%s\"\n", target, why);
  free(before), free(after), free(msg);
}

static void test_failed_writes_keep_the_old_file(void **state) {
  (void)state;
  char path[128];
  MrError err = {0};
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  assert_int_equal(write_model(path, &err), STATUS_OK);
  Net *net = small_net();
  snprintf(path, sizeof path, "%s/model.onnx", dir);
  assert_int_equal(onnx_export(net, path, &err), STATUS_OK);
  net_free(net);
  DataSplits *d = phantom_generate(28, 200, 1, &err);
  snprintf(path, sizeof path, "%s/data.npz", dir);
  assert_int_equal(data_save_npz(d, path, &err), STATUS_OK);
  data_free(d);
  check_failed_write("model.safetensors", "import @/model.onnx --out @/model.safetensors");
  check_failed_write("model.onnx", "export --model @/model.safetensors --out @/model.onnx");
  check_failed_write("data.npz", "data phantom --n 300 --seed 2 --out @/data.npz");
}

/* A temporary file whose process is gone (a kill -9 mid-write) is removed by the next write;
 * one of a live process is not. */
static void test_stale_temporary_files_are_removed(void **state) {
  (void)state;
  const pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, NULL, 0);
  char stale[160], live[160], path[128];
  snprintf(path, sizeof path, "%s/again.safetensors", dir);
  snprintf(stale, sizeof stale, "%s.tmp.%ld", path, (long)gone);
  snprintf(live, sizeof live, "%s.tmp.%ld", path, (long)getppid());
  FILE *f = fopen(stale, "w");
  fputs("half a model", f);
  fclose(f);
  f = fopen(live, "w");
  fputs("another run's model", f);
  fclose(f);
  MrError err = {0};
  assert_int_equal(write_model(path, &err), STATUS_OK);
  assert_int_equal(access(stale, F_OK), -1);
  assert_int_equal(access(live, F_OK), 0);
  remove(live);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_failed_writes_keep_the_old_file),
                                     cmocka_unit_test(test_stale_temporary_files_are_removed)};
  return cmocka_run_group_tests_name("atomic outputs", tests, setup, teardown);
}
