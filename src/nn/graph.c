/* A net's graph as JSON (docs/model-files.md, "graph" schema version 1): the
 * op list in order, each with its kind, PyTorch name, input tensor ids and
 * the attributes its op-table row reads. Model files store it in
 * __metadata__ so any net, built-in, hand-built or imported, reloads
 * exactly. Reading treats the text as untrusted: every field is checked and
 * an error names the op by its index. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define GRAPH_VERSION 1
#define GRAPH_MAX_OPS 100000
#define ATTR_INT_MAX 1000000

/* One attribute: its bit, its JSON key, and where it lives (ints or floats). */
typedef struct {
  unsigned bit;
  const char *key;
  size_t offset;
  int count;    /* array length (1: a scalar) */
  int is_float; /* else int */
} AttrField;

#define INT_FIELD(bit, key, member, n) \
  { bit, key, offsetof(OpAttrs, member), n, 0 }
#define FLOAT_FIELD(bit, key, member) \
  { bit, key, offsetof(OpAttrs, member), 1, 1 }
static const AttrField attr_fields[] = {
    INT_FIELD(ATTR_OUT_CHANNELS, "out_channels", out_channels, 1),
    INT_FIELD(ATTR_GROUPS, "groups", groups, 1),
    INT_FIELD(ATTR_BIAS, "bias", bias, 1),
    INT_FIELD(ATTR_KERNEL, "kernel", kernel, 2),
    INT_FIELD(ATTR_STRIDE, "stride", stride, 2),
    INT_FIELD(ATTR_PAD, "pad", pad, 4),
    INT_FIELD(ATTR_DILATION, "dilation", dilation, 2),
    INT_FIELD(ATTR_OUTPUT_PADDING, "output_padding", output_padding, 2),
    INT_FIELD(ATTR_SCALE, "scale", scale, 2),
    INT_FIELD(ATTR_MODE, "mode", mode, 1),
    FLOAT_FIELD(ATTR_P, "p", p),
    FLOAT_FIELD(ATTR_EPS, "eps", eps),
    FLOAT_FIELD(ATTR_MOMENTUM, "momentum", momentum),
    FLOAT_FIELD(ATTR_LO, "lo", lo),
    FLOAT_FIELD(ATTR_HI, "hi", hi),
    FLOAT_FIELD(ATTR_VALUE, "value", value),
};
#define N_ATTR_FIELDS (int)(sizeof attr_fields / sizeof attr_fields[0])

char *graph_to_json(const Net *net) {
  cJSON *root = cJSON_CreateObject();
  cJSON_AddNumberToObject(root, "version", GRAPH_VERSION);
  cJSON *ops = cJSON_AddArrayToObject(root, "ops");
  for (int i = 0; i < net->n_layers; i++) {
    const Layer *l = &net->layers[i];
    const OpDef *op = op_def(l->kind);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", op->name);
    if (l->name[0]) cJSON_AddStringToObject(o, "name", l->name);
    cJSON *in = cJSON_AddArrayToObject(o, "inputs");
    for (int k = 0; k < l->n_src; k++) cJSON_AddItemToArray(in, cJSON_CreateNumber(l->src[k]));
    for (int f = 0; f < N_ATTR_FIELDS; f++) {
      const AttrField *a = &attr_fields[f];
      if (!(op->attrs & a->bit)) continue;
      const char *base = (const char *)&l->a + a->offset;
      if (a->is_float) {
        cJSON_AddNumberToObject(o, a->key, *(const float *)base);
      } else if (a->count == 1) {
        cJSON_AddNumberToObject(o, a->key, *(const int *)base);
      } else {
        cJSON *arr = cJSON_AddArrayToObject(o, a->key);
        for (int j = 0; j < a->count; j++)
          cJSON_AddItemToArray(arr, cJSON_CreateNumber(((const int *)base)[j]));
      }
    }
    cJSON_AddItemToArray(ops, o);
  }
  char *text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return text;
}

static int json_int(const cJSON *v, int *out) {
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
      fabs(v->valuedouble) > ATTR_INT_MAX)
    return 0;
  *out = (int)v->valuedouble;
  return 1;
}

static Status attr_read(OpAttrs *attrs, const cJSON *o, const AttrField *a, const char *where,
                        int i, MrError *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a->key);
  if (!v) return STATUS_OK; /* the op's default */
  char *base = (char *)attrs + a->offset;
  if (a->is_float) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30)
      return mr_error_set(err, STATUS_ERR_FORMAT, "%s: graph op %d: \"%s\" is not a number", where,
                          i, a->key);
    *(float *)base = (float)v->valuedouble;
    return STATUS_OK;
  }
  if (a->count == 1) {
    if (!json_int(v, (int *)base))
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: graph op %d: \"%s\" is not an integer within +-%d", where, i, a->key,
                          ATTR_INT_MAX);
    return STATUS_OK;
  }
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != a->count)
    return mr_error_set(err, STATUS_ERR_FORMAT, "%s: graph op %d: \"%s\" needs %d integers", where,
                        i, a->key, a->count);
  for (int j = 0; j < a->count; j++)
    if (!json_int(cJSON_GetArrayItem(v, j), (int *)base + j))
      return mr_error_set(err, STATUS_ERR_FORMAT,
                          "%s: graph op %d: \"%s\"[%d] is not an integer within +-%d", where, i,
                          a->key, j, ATTR_INT_MAX);
  return STATUS_OK;
}

Status graph_build_from_json(Net *net, const char *text, const char *where, MrError *err) {
  cJSON *root = cJSON_Parse(text);
  Status s = STATUS_OK;
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
  const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "ops");
  int version = 0;
  if (!cJSON_IsObject(root) || !json_int(ver, &version) || !cJSON_IsArray(ops)) {
    s = mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: the graph is not a JSON object with \"version\" and \"ops\"", where);
  } else if (version != GRAPH_VERSION) {
    s = mr_error_set(err, STATUS_ERR_FORMAT,
                     "%s: graph version %d; this medrobust reads version %d", where, version,
                     GRAPH_VERSION);
  } else if (cJSON_GetArraySize(ops) < 1 || cJSON_GetArraySize(ops) > GRAPH_MAX_OPS) {
    s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: the graph has %d ops (1..%d)", where,
                     cJSON_GetArraySize(ops), GRAPH_MAX_OPS);
  }
  int i = 0;
  const cJSON *o;
  cJSON_ArrayForEach(o, ops) {
    if (s != STATUS_OK) break;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(o, "op");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(o, "inputs");
    const int k = cJSON_IsString(kind) ? op_parse(kind->valuestring) : -1;
    if (k < 0) {
      s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: graph op %d: unknown op \"%s\"", where, i,
                       cJSON_IsString(kind) ? kind->valuestring : "(none)");
      break;
    }
    if ((name && (!cJSON_IsString(name) || strlen(name->valuestring) >= NAME_LEN)) ||
        !cJSON_IsArray(inputs) || cJSON_GetArraySize(inputs) > NET_MAX_INPUTS) {
      s = mr_error_set(err, STATUS_ERR_FORMAT,
                       "%s: graph op %d (%s): needs \"inputs\" (at most %d ids) and a name "
                       "shorter than %d characters",
                       where, i, kind->valuestring, NET_MAX_INPUTS, NAME_LEN);
      break;
    }
    int src[NET_MAX_INPUTS], n_src = 0;
    const cJSON *id;
    cJSON_ArrayForEach(id, inputs) {
      if (!json_int(id, &src[n_src])) {
        s = mr_error_set(err, STATUS_ERR_FORMAT, "%s: graph op %d: an input is not a tensor id",
                         where, i);
        break;
      }
      n_src++;
    }
    OpAttrs attrs = op_attrs_default();
    const OpDef *op = op_def((OpKind)k);
    for (int f = 0; s == STATUS_OK && f < N_ATTR_FIELDS; f++)
      if (op->attrs & attr_fields[f].bit) s = attr_read(&attrs, o, &attr_fields[f], where, i, err);
    if (s != STATUS_OK) break;
    if (net_add(net, (OpKind)k, name ? name->valuestring : "", src, n_src, &attrs) < 0) {
      s = mr_error_set(err, net->build_err.status, "%s: graph op %d (%s): %s", where, i, op->name,
                       net->build_err.msg);
      break;
    }
    i++;
  }
  cJSON_Delete(root);
  return s;
}

Net *net_from_graph(const ModelSpec *spec, const char *graph_json, const char *where,
                    MrError *err) {
  if (spec->in_c < 1 || spec->in_c > 3 || spec->in_h < 1 || spec->in_w < 1 || spec->in_h > 4096 ||
      spec->in_w > 4096 || spec->n_classes < 2 || spec->n_classes > MR_MAX_CLASSES) {
    mr_error_set(err, STATUS_ERR_FORMAT,
                 "%s: input %dx%dx%d or %d classes out of range (1..3 channels, 1..4096 pixels a "
                 "side, 2..%d classes)",
                 where, spec->in_c, spec->in_h, spec->in_w, spec->n_classes, MR_MAX_CLASSES);
    return NULL;
  }
  for (int c = 0; c < spec->in_c; c++)
    if (!(spec->norm_std[c] > 0.0f) || !isfinite(spec->norm_mean[c])) {
      mr_error_set(err, STATUS_ERR_FORMAT, "%s: normalisation std must be > 0", where);
      return NULL;
    }
  Net *net = net_new(spec);
  if (!net) {
    mr_error_set(err, STATUS_ERR_NOMEM, "%s: out of memory", where);
    return NULL;
  }
  /* the graph's own errors name `where` and the op; net_finish's name neither */
  Status s = graph_build_from_json(net, graph_json, where, err);
  MrError finish = {0};
  if (s == STATUS_OK && net_finish(net, &finish) != STATUS_OK)
    s = mr_error_set(err, finish.status, "%s: %s", where, finish.msg);
  if (s != STATUS_OK) {
    net_free(net);
    return NULL;
  }
  return net;
}
