/* Attack scratch: one arena per net (kept in the net's auxiliary slot and
 * freed with it), so attacks plan their buffers once per batch size like the
 * net does instead of allocating on every call. Allocations bump a pointer
 * and come back zeroed; attack_ctx_free returns to the context's mark, so a
 * nested attack_run (the standard suite runs APGD and Square) stacks on its
 * parent's buffers. A call that outgrows the arena gets an extra block
 * (nothing already handed out moves); the next outermost attack replaces the
 * blocks by one of the high-water size, so from the second call of a given
 * shape on nothing is allocated. */
#include <stdlib.h>
#include <string.h>

#include "../nn/net.h"
#include "attack.h"

#define WS_MAX_BLOCKS 32
#define WS_ALIGN 64

typedef struct {
  char *mem;
  size_t size, used;
} WsBlock;

struct AttackWorkspace {
  WsBlock block[WS_MAX_BLOCKS];
  int n, cur;                /* blocks, and the one allocations bump in */
  size_t in_use, high_water; /* bytes handed out now / at most since consolidation */
  int depth;                 /* contexts open */
  long allocations;          /* blocks ever allocated (tests check it stops growing) */
};

static void workspace_free(void *p) {
  AttackWorkspace *ws = p;
  if (!ws) return;
  for (int i = 0; i < ws->n; i++) free(ws->block[i].mem);
  free(ws);
}

static AttackWorkspace *workspace_of(Net *net) {
  if (!net->aux) {
    net->aux = calloc(1, sizeof(AttackWorkspace));
    net->aux_free = workspace_free;
  }
  return net->aux;
}

static int block_add(AttackWorkspace *ws, size_t bytes) {
  if (ws->n == WS_MAX_BLOCKS) return 0;
  WsBlock *b = &ws->block[ws->n];
  b->mem = aligned_alloc(WS_ALIGN, (bytes + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN);
  if (!b->mem) return 0;
  b->size = bytes, b->used = 0;
  ws->cur = ws->n++;
  ws->allocations++;
  return 1;
}

/* At the outermost open: several blocks become one of the high-water size. */
static void workspace_consolidate(AttackWorkspace *ws) {
  if (ws->n <= 1) return;
  for (int i = 0; i < ws->n; i++) free(ws->block[i].mem);
  ws->n = 0;
  if (!block_add(ws, ws->high_water)) ws->n = 0;
}

void attack_ws_open(AttackCtx *c) {
  AttackWorkspace *ws = workspace_of(c->net);
  c->ws = ws;
  if (!ws) return;
  if (ws->depth++ == 0) workspace_consolidate(ws);
  c->ws_block = ws->cur;
  c->ws_used = ws->n ? ws->block[ws->cur].used : 0;
  c->ws_in_use = ws->in_use;
}

void attack_ws_close(AttackCtx *c) {
  AttackWorkspace *ws = c->ws;
  if (!ws) return;
  for (int i = c->ws_block + 1; i < ws->n; i++) ws->block[i].used = 0;
  if (ws->n) ws->block[c->ws_block].used = c->ws_used;
  ws->cur = c->ws_block;
  ws->in_use = c->ws_in_use;
  ws->depth--;
  c->ws = NULL;
}

void *attack_scratch(AttackCtx *c, size_t bytes) {
  AttackWorkspace *ws = c->ws;
  if (!ws) return NULL;
  const size_t need = (bytes + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
  /* the current block, then any emptied one after it, then a new block */
  while (ws->n == 0 || ws->block[ws->cur].used + need > ws->block[ws->cur].size) {
    if (ws->n && ws->cur + 1 < ws->n) {
      ws->block[++ws->cur].used = 0;
      continue;
    }
    if (!block_add(ws, need > ws->high_water ? need : ws->high_water)) return NULL;
  }
  WsBlock *b = &ws->block[ws->cur];
  void *p = b->mem + b->used;
  b->used += need;
  ws->in_use += need;
  if (ws->in_use > ws->high_water) ws->high_water = ws->in_use;
  memset(p, 0, bytes);
  return p;
}

long attack_workspace_allocations(Net *net) {
  const AttackWorkspace *ws = net->aux;
  return ws ? ws->allocations : 0;
}
