/* The op table: one OpDef per kind, in OP_KINDS order (medrobust.h), each defined
 * in its own file under src/ops/. */
#include <string.h>

#include "net.h"

#define OP_EXTERN(kind, sym) extern const OpDef op_##sym;
OP_KINDS(OP_EXTERN)
#undef OP_EXTERN

static const OpDef *const op_table[OP_KIND_COUNT] = {
#define OP_ROW(kind, sym) [kind] = &op_##sym,
    OP_KINDS(OP_ROW)
#undef OP_ROW
};

const OpDef *op_def(OpKind kind) {
  return kind >= 0 && kind < OP_KIND_COUNT ? op_table[kind] : NULL;
}

int op_parse(const char *name) {
  for (int k = 0; k < OP_KIND_COUNT; k++)
    if (strcmp(op_table[k]->name, name) == 0) return k;
  return -1;
}
