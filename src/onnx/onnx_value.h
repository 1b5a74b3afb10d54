/* What the ONNX importer and its constant folder share: a named value of
 * the graph (a tensor of the net, or a constant) and attribute lookup. */
#ifndef MR_ONNX_VALUE_H
#define MR_ONNX_VALUE_H

#include <stdint.h>
#include <string.h>

#include "onnx.pb-c.h"

#define ONNX_MAX_DIMS 8
/* the largest constant folding may make: shapes and small tables, never an image */
#define ONNX_MAX_FOLDED ((size_t)1 << 24)

typedef struct {
  const char *name;
  int tensor; /* net tensor id; -1 for a constant */
  int ndim;
  int64_t dims[ONNX_MAX_DIMS];
  float *f;   /* float constants */
  int64_t *i; /* integer constants (shapes, axes, pads) */
  size_t n;
} Value;

static inline const Onnx__AttributeProto *onnx_attr(const Onnx__NodeProto *n, const char *name) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0) return n->attribute[i];
  return NULL;
}

/* Ops onnx_fold evaluates when every input is a constant. */
int onnx_foldable(const char *op);
/* Evaluates node n over its constant inputs (NULL for an absent optional
 * one) into out (its data malloc'ed; name and tensor left to the caller).
 * Returns NULL, or what could not be folded ("out of memory" included). */
const char *onnx_fold(const Onnx__NodeProto *n, const Value *const *in, size_t n_in, Value *out);

#endif
