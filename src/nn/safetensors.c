/* Model files in the safetensors format: u64 little-endian header length,
 * a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}},
 * then the raw little-endian tensor bytes. Tensor names and shapes are the
 * PyTorch state_dict's; the architecture goes in __metadata__ (docs/model-files.md).
 * Files are untrusted: every size is checked before it is used, and writes
 * go to a temporary file that is renamed into place. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/atomicfile.h"
#include "../data/data.h"
#include "net.h"

#define MAX_HEADER_BYTES (100u << 20)

/* ---- saving ----------------------------------------------------------- */

static void meta_add_int(cJSON *meta, const char *key, int v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%d", v);
  cJSON_AddStringToObject(meta, key, buf);
}

static void meta_add_float(cJSON *meta, const char *key, float v) {
  char buf[48];
  snprintf(buf, sizeof buf, "%.9g", v);
  cJSON_AddStringToObject(meta, key, buf);
}

static void meta_add_floats(cJSON *meta, const char *key, const float *v, int n) {
  char buf[160] = "";
  for (int i = 0; i < n; i++) {
    char one[48];
    snprintf(one, sizeof one, "%s%.9g", i ? "," : "", v[i]);
    strncat(buf, one, sizeof buf - strlen(buf) - 1);
  }
  cJSON_AddStringToObject(meta, key, buf);
}

static cJSON *metadata_from_net(const Net *net) {
  const ModelSpec *s = &net->spec;
  cJSON *meta = cJSON_CreateObject();
  cJSON_AddStringToObject(meta, "format", "pt");
  cJSON_AddStringToObject(meta, "medrobust.version", "1"); /* the metadata layout's version */
  cJSON_AddStringToObject(meta, "arch", s->arch);
  meta_add_int(meta, "in_channels", s->in_c);
  meta_add_int(meta, "in_height", s->in_h);
  meta_add_int(meta, "in_width", s->in_w);
  meta_add_int(meta, "num_classes", s->n_classes);
  meta_add_float(meta, "width", s->width);
  meta_add_int(meta, "depth", s->depth);
  meta_add_int(meta, "base", s->base);
  meta_add_int(meta, "kernel", s->kernel);
  meta_add_int(meta, "pool", s->pool);
  meta_add_float(meta, "dropout", s->dropout);
  meta_add_int(meta, "growth", s->growth);
  meta_add_int(meta, "decoder_up", s->decoder_up);
  char layers[64];
  snprintf(layers, sizeof layers, "%d,%d,%d,%d", s->block_layers[0], s->block_layers[1],
           s->block_layers[2], s->block_layers[3]);
  cJSON_AddStringToObject(meta, "block_layers", layers);
  meta_add_floats(meta, "norm_mean", s->norm_mean, s->in_c);
  meta_add_floats(meta, "norm_std", s->norm_std, s->in_c);
  cJSON *names = cJSON_CreateArray();
  for (int i = 0; i < s->n_classes; i++) {
    char fallback[16];
    snprintf(fallback, sizeof fallback, "%d", i);
    cJSON_AddItemToArray(names,
                         cJSON_CreateString(s->class_names[i] ? s->class_names[i] : fallback));
  }
  char *names_text = cJSON_PrintUnformatted(names);
  cJSON_AddStringToObject(meta, "class_names", names_text ? names_text : "[]");
  if (s->training[0]) cJSON_AddStringToObject(meta, "training", s->training);
  if (s->data[0]) cJSON_AddStringToObject(meta, "data", s->data);
  if (net_output_pixels(net) > 1) {
    meta_add_int(meta, "seg_loss", (int)s->seg_loss);
    meta_add_int(meta, "ignore_label", s->ignore_label);
  }
  /* the graph makes the file self-describing; arch and the options above
   * stay for listings and for older readers */
  char *graph = graph_to_json(net);
  if (graph) cJSON_AddStringToObject(meta, "graph", graph);
  free(graph);
  free(names_text);
  cJSON_Delete(names);
  return meta;
}

/* tensor i of the file: the net's first, then the extras */
static TensorRef save_tensor(const Net *net, const TensorRef *extra, int i) {
  return i < net_tensor_count(net) ? net_tensor(net, i) : extra[i - net_tensor_count(net)];
}

Status safetensors_save_checkpoint(const Net *net, const char *path, const TensorRef *extra,
                                   int n_extra, const char *const *meta_kv, MrError *err) {
  cJSON *root = cJSON_CreateObject();
  size_t offset = 0;
  const int n_total = net_tensor_count(net) + n_extra;
  for (int i = 0; i < n_total; i++) {
    TensorRef t = save_tensor(net, extra, i);
    const size_t bytes = t.numel * (t.is_int64 ? 8 : 4);
    cJSON *entry = cJSON_CreateObject();
    cJSON_AddStringToObject(entry, "dtype", t.is_int64 ? "I64" : "F32");
    cJSON *shape = cJSON_AddArrayToObject(entry, "shape");
    for (int d = 0; d < t.ndim; d++)
      cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t.shape[d]));
    cJSON *offsets = cJSON_AddArrayToObject(entry, "data_offsets");
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset));
    cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + bytes)));
    cJSON_AddItemToObject(root, t.name, entry);
    offset += bytes;
  }
  cJSON *meta = metadata_from_net(net);
  for (int i = 0; meta_kv && meta_kv[i] && meta_kv[i + 1]; i += 2)
    cJSON_AddStringToObject(meta, meta_kv[i], meta_kv[i + 1]);
  cJSON_AddItemToObject(root, "__metadata__", meta);
  char *header = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!header) return mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory writing header", path);
  size_t hlen = strlen(header);
  const size_t padded = (hlen + 7) & ~(size_t)7; /* 8-byte aligned data, padded with spaces */

  AtomicFile af;
  const Status opened = atomic_open(&af, path, "wb", err);
  if (opened != STATUS_OK) {
    free(header);
    return opened;
  }
  FILE *f = af.f;
  uint8_t len_le[8];
  for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  int ok = fwrite(len_le, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
  for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
  free(header);
  /* x86-64 and every platform we build on are little-endian, as the format is */
  for (int i = 0; ok && i < n_total; i++) {
    TensorRef t = save_tensor(net, extra, i);
    ok = t.is_int64 ? fwrite(t.idata, 8, t.numel, f) == t.numel
                    : fwrite(t.data, 4, t.numel, f) == t.numel;
  }
  if (!ok) {
    const int e = errno;
    atomic_abort(&af);
    return mr_error_set(err, STATUS_ERR_IO, "%s: write failed: %s (the previous file is kept)",
                        path, strerror(e));
  }
  return atomic_commit(&af, err);
}

Status safetensors_save_net(const Net *net, const char *path, MrError *err) {
  return safetensors_save_checkpoint(net, path, NULL, 0, NULL, err);
}

/* ---- loading ---------------------------------------------------------- */

typedef struct {
  uint8_t *bytes;
  size_t size;
  cJSON *header;
  const uint8_t *data;
  size_t data_size;
} StFile;

static void st_close(StFile *st) {
  free(st->bytes);
  cJSON_Delete(st->header);
  memset(st, 0, sizeof *st);
}

static Status st_open(StFile *st, const char *path, MrError *err) {
  memset(st, 0, sizeof *st);
  /* a regular file within mr_limits (a directory or a device is refused by name) */
  st->bytes = file_read_all(path, (size_t)mr_limits().file_bytes, &st->size, err);
  if (!st->bytes) return err ? err->status : STATUS_ERR_IO;
  if (st->size < 8) {
    const size_t size = st->size;
    st_close(st);
    return mr_error_set(
        err, STATUS_ERR_FORMAT,
        "%s: %zu bytes, too short for a safetensors file (needs an 8-byte header length)", path,
        size);
  }
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)st->bytes[i] << (8 * i);
  if (hlen > MAX_HEADER_BYTES || hlen > st->size - 8) {
    Status s = mr_error_set(
        err, STATUS_ERR_FORMAT,
        "%s: header length %llu does not fit in a %zu-byte file (truncated or not safetensors)",
        path, (unsigned long long)hlen, st->size);
    st_close(st);
    return s;
  }
  st->header = cJSON_ParseWithLength((const char *)st->bytes + 8, (size_t)hlen);
  if (!st->header || !cJSON_IsObject(st->header)) {
    st_close(st);
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: header is not a JSON object", path);
  }
  st->data = st->bytes + 8 + hlen;
  st->data_size = st->size - 8 - (size_t)hlen;
  return STATUS_OK;
}

static const char *meta_str(const cJSON *meta, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_int(const char *s, int *out) {
  if (!s || !*s) return 0;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (*end || errno || v < -1000000 || v > 1000000) return 0;
  *out = (int)v;
  return 1;
}

static int parse_float(const char *s, float *out) {
  if (!s || !*s) return 0;
  char *end;
  float v = strtof(s, &end);
  if (*end || !isfinite(v)) return 0;
  *out = v;
  return 1;
}

static int parse_floats(const char *s, float *out, int n) {
  if (!s) return 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  char *save = NULL, *tok = strtok_r(buf, ",", &save);
  int i = 0;
  for (; tok && i < n; i++, tok = strtok_r(NULL, ",", &save))
    if (!parse_float(tok, &out[i])) return 0;
  return i == n && !tok;
}

/* has_graph: the file carries its graph, so arch may name no built-in family */
static Status spec_from_metadata(ModelSpec *spec, const cJSON *meta, const char *path,
                                 int has_graph, MrError *err) {
  const char *arch = meta_str(meta, "arch");
  if (!arch)
    return mr_error_set(err, STATUS_ERR_FORMAT,
                        "%s: no \"arch\" in __metadata__: not a medrobust model file (load it into "
                        "a built net instead)",
                        path);
  int c = 0, h = 0, w = 0, k = 0;
  if (!parse_int(meta_str(meta, "in_channels"), &c) ||
      !parse_int(meta_str(meta, "in_height"), &h) || !parse_int(meta_str(meta, "in_width"), &w) ||
      !parse_int(meta_str(meta, "num_classes"), &k))
    return mr_error_set(
        err, STATUS_ERR_FORMAT,
        "%s: __metadata__ needs integer in_channels, in_height, in_width, num_classes", path);
  *spec = model_spec_default(arch, c, h, w, k);
  if (!spec->arch[0] && has_graph) {
    *spec = model_spec_default("cnn", c, h, w, k);
    snprintf(spec->arch, sizeof spec->arch, "%s", arch);
  }
  if (!spec->arch[0])
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: unknown architecture '%s'", path, arch);
  struct {
    const char *key;
    int *target;
  } ints[] = {{"depth", &spec->depth},   {"base", &spec->base},
              {"kernel", &spec->kernel}, {"pool", &spec->pool},
              {"growth", &spec->growth}, {"decoder_up", &spec->decoder_up}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    const char *v = meta_str(meta, ints[i].key);
    if (v && !parse_int(v, ints[i].target))
      return mr_error_set(err, STATUS_ERR_FORMAT, "%s: __metadata__ %s='%s' is not an integer",
                          path, ints[i].key, v);
  }
  const char *v;
  if ((v = meta_str(meta, "width")) && !parse_float(v, &spec->width))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: __metadata__ width='%s' is not a number", path,
                        v);
  if ((v = meta_str(meta, "dropout")) && !parse_float(v, &spec->dropout))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: __metadata__ dropout='%s' is not a number",
                        path, v);
  if ((v = meta_str(meta, "block_layers"))) {
    char extra;
    int *bl = spec->block_layers;
    if (sscanf(v, "%d,%d,%d,%d%c", &bl[0], &bl[1], &bl[2], &bl[3], &extra) != 4)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: __metadata__ block_layers='%s' needs 4 integers", path, v);
  }
  int seg_loss = 0;
  if ((v = meta_str(meta, "seg_loss")) &&
      (!parse_int(v, &seg_loss) || seg_loss < SEG_LOSS_XENT || seg_loss > SEG_LOSS_XENT_DICE))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: __metadata__ seg_loss='%s' is not 0, 1 or 2",
                        path, v);
  spec->seg_loss = (SegLoss)seg_loss;
  if ((v = meta_str(meta, "ignore_label")) && !parse_int(v, &spec->ignore_label))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: __metadata__ ignore_label='%s'", path, v);
  if (c < 1 || c > 3) return mr_error_set(err, STATUS_ERR_FORMAT, "%s: in_channels %d", path, c);
  if ((v = meta_str(meta, "norm_mean")) && !parse_floats(v, spec->norm_mean, c))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: norm_mean='%s' needs %d numbers", path, v, c);
  if ((v = meta_str(meta, "norm_std")) && !parse_floats(v, spec->norm_std, c))
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: norm_std='%s' needs %d numbers", path, v, c);
  if ((v = meta_str(meta, "class_names"))) {
    cJSON *names = cJSON_Parse(v);
    if (!cJSON_IsArray(names) || cJSON_GetArraySize(names) != k) {
      cJSON_Delete(names);
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: class_names must be a JSON array of %d names", path, k);
    }
    for (int i = 0; i < k && i < MR_MAX_CLASSES; i++) {
      const cJSON *n = cJSON_GetArrayItem(names, i);
      if (cJSON_IsString(n)) spec->class_names[i] = strdup(n->valuestring);
    }
    cJSON_Delete(names);
  }
  /* a record that does not fit is dropped, not cut into invalid JSON */
  if ((v = meta_str(meta, "training")) && strlen(v) < sizeof spec->training)
    snprintf(spec->training, sizeof spec->training, "%s", v);
  if ((v = meta_str(meta, "data")) && strlen(v) < sizeof spec->data)
    snprintf(spec->data, sizeof spec->data, "%s", v);
  return STATUS_OK;
}

static void shape_str(char *buf, size_t n, const cJSON *shape) {
  size_t used = (size_t)snprintf(buf, n, "[");
  const cJSON *d;
  int first = 1;
  cJSON_ArrayForEach(d, shape) {
    if (used >= n) break;
    used += (size_t)snprintf(buf + used, n - used, "%s%.0f", first ? "" : ",", d->valuedouble);
    first = 0;
  }
  if (used < n) snprintf(buf + used, n - used, "]");
}

typedef struct {
  size_t begin, end;
} ByteRange;

static Status st_load_tensors_into(Net *net, const StFile *st, const char *path, TensorRef *extra,
                                   int n_extra, ByteRange *ranges, MrError *err) {
  /* every tensor of the file must be one the net (or the caller) expects */
  const cJSON *item;
  cJSON_ArrayForEach(item, st->header) {
    if (strcmp(item->string, "__metadata__") == 0) continue;
    int found = 0;
    for (int i = 0; i < net_tensor_count(net) + n_extra && !found; i++)
      found = strcmp(save_tensor(net, extra, i).name, item->string) == 0;
    if (!found)
      return mr_error_set(err, STATUS_ERR_SHAPE, "%s: unexpected tensor '%s' (not in %s)", path,
                          item->string, net->spec.arch);
  }
  for (int i = 0; i < net_tensor_count(net) + n_extra; i++) {
    TensorRef t = save_tensor(net, extra, i);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(st->header, t.name);
    if (!e) return mr_error_set(err, STATUS_ERR_SHAPE, "%s: missing tensor '%s'", path, t.name);
    const char *dtype = meta_str(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dtype || !cJSON_IsArray(shape) || !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: tensor '%s' lacks dtype, shape or data_offsets", path, t.name);
    const char *want_dtype = t.is_int64 ? "I64" : "F32";
    if (strcmp(dtype, want_dtype) != 0)
      return mr_error_set(err, STATUS_ERR_FORMAT, "%s: tensor '%s' has dtype %s, expected %s", path,
                          t.name, dtype, want_dtype);
    int shape_ok = cJSON_GetArraySize(shape) == t.ndim;
    for (int d = 0; shape_ok && d < t.ndim; d++) {
      const cJSON *dim = cJSON_GetArrayItem(shape, d);
      shape_ok = cJSON_IsNumber(dim) && dim->valuedouble == (double)t.shape[d];
    }
    if (!shape_ok) {
      char got[96], want[96] = "[";
      shape_str(got, sizeof got, shape);
      for (int d = 0; d < t.ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "",
                 (long long)t.shape[d]);
      strncat(want, "]", sizeof want - strlen(want) - 1);
      return mr_error_set(err, STATUS_ERR_SHAPE, "%s: tensor '%s' has shape %s, expected %s", path,
                          t.name, got, want);
    }
    const cJSON *b = cJSON_GetArrayItem(offs, 0), *en = cJSON_GetArrayItem(offs, 1);
    const size_t bytes = t.numel * (t.is_int64 ? 8 : 4);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 ||
        en->valuedouble < b->valuedouble || en->valuedouble > (double)st->data_size ||
        en->valuedouble - b->valuedouble != (double)bytes ||
        b->valuedouble != floor(b->valuedouble))
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: tensor '%s' data_offsets [%.0f,%.0f] do not hold %zu bytes within "
                          "the %zu data bytes (truncated?)",
                          path, t.name, cJSON_IsNumber(b) ? b->valuedouble : -1.0,
                          cJSON_IsNumber(en) ? en->valuedouble : -1.0, bytes, st->data_size);
    ranges[i].begin = (size_t)b->valuedouble, ranges[i].end = ranges[i].begin + bytes;
    const uint8_t *src = st->data + (size_t)b->valuedouble;
    if (t.is_int64) {
      memcpy(t.idata, src, bytes);
    } else {
      memcpy(t.data, src, bytes);
      for (size_t j = 0; j < t.numel; j++)
        if (!isfinite(t.data[j]))
          return mr_error_set(err, STATUS_ERR_NAN,
                              "%s: tensor '%s' holds a non-finite value at index %zu", path, t.name,
                              j);
    }
  }
  return STATUS_OK;
}

static int cmp_range(const void *a, const void *b) {
  const ByteRange *x = a, *y = b;
  return (x->begin > y->begin) - (x->begin < y->begin);
}

/* The format's rule: the tensors tile the data bytes, no overlap, no hole (an
 * overlap would load one tensor's bytes as another's weights). */
static Status check_tiling(ByteRange *r, int n, size_t data_size, const char *path, MrError *err) {
  qsort(r, (size_t)n, sizeof *r, cmp_range);
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    if (r[i].begin != at)
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: tensor data %s at byte %zu (the tensors must tile the data "
                          "without overlaps or holes)",
                          path, r[i].begin < at ? "overlaps" : "leaves a hole", r[i].begin);
    at = r[i].end;
  }
  if (at != data_size)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: %zu trailing data bytes no tensor holds", path,
                        data_size - at);
  return STATUS_OK;
}

static Status st_load_tensors(Net *net, const StFile *st, const char *path, TensorRef *extra,
                              int n_extra, MrError *err) {
  const int n_tensors = net_tensor_count(net) + n_extra;
  ByteRange *ranges = malloc(sizeof(ByteRange) * (size_t)(n_tensors ? n_tensors : 1));
  if (!ranges) return mr_error_set(err, STATUS_ERR_NOMEM, "out of memory");
  const Status s = st_load_tensors_into(net, st, path, extra, n_extra, ranges, err);
  const Status tiled =
      s == STATUS_OK ? check_tiling(ranges, n_tensors, st->data_size, path, err) : s;
  free(ranges);
  return tiled;
}

Status safetensors_load_into(Net *net, const char *path, MrError *err) {
  StFile st;
  Status s = st_open(&st, path, err);
  if (s != STATUS_OK) return s;
  s = st_load_tensors(net, &st, path, NULL, 0, err);
  st_close(&st);
  return s;
}

Status safetensors_read_metadata(const char *path, const char *const *keys, char **values,
                                 MrError *err) {
  StFile st;
  Status s = st_open(&st, path, err);
  if (s != STATUS_OK) return s;
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(st.header, "__metadata__");
  for (int i = 0; keys[i]; i++) {
    const char *v = meta_str(meta, keys[i]);
    values[i] = v ? strdup(v) : NULL;
  }
  st_close(&st);
  return STATUS_OK;
}

Status safetensors_load_checkpoint(Net *net, const char *path, TensorRef *extra, int n_extra,
                                   const char *const *meta_keys, char **meta_values, MrError *err) {
  StFile st;
  Status s = st_open(&st, path, err);
  if (s != STATUS_OK) return s;
  s = st_load_tensors(net, &st, path, extra, n_extra, err);
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(st.header, "__metadata__");
  for (int i = 0; s == STATUS_OK && meta_keys && meta_keys[i]; i++) {
    const char *v = meta_str(meta, meta_keys[i]);
    if (!v)
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: checkpoint lacks \"%s\"", path, meta_keys[i]);
    else
      meta_values[i] = strdup(v);
  }
  st_close(&st);
  return s;
}

Net *safetensors_load_net(const char *path, MrError *err) {
  StFile st;
  if (st_open(&st, path, err) != STATUS_OK) return NULL;
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(st.header, "__metadata__");
  ModelSpec spec;
  memset(&spec, 0, sizeof spec);
  Net *net = NULL;
  if (!cJSON_IsObject(meta)) {
    mr_error_set(err, STATUS_ERR_FORMAT, "%s: no __metadata__ with the architecture", path);
  } else if (spec_from_metadata(&spec, meta, path, meta_str(meta, "graph") != NULL, err) ==
             STATUS_OK) {
    const char *graph = meta_str(meta, "graph");
    spec.max_floats = st.data_size / sizeof(float) + 1;
    MrError build_err = {0};
    if (graph) {
      net = net_from_graph(&spec, graph, path, err);
    } else { /* written before files carried their graph: rebuild the family */
      net = model_build(&spec, 0, &build_err);
      if (!net) mr_error_set(err, build_err.status, "%s: %s", path, build_err.msg);
    }
    if (net && st_load_tensors(net, &st, path, NULL, 0, err) != STATUS_OK) {
      net_free(net);
      net = NULL;
    }
  }
  model_spec_free(&spec);
  st_close(&st);
  return net;
}
