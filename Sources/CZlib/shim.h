// zlib for SPDY/3.1 header blocks (the process runtime's streaming server). The init macros
// take the library's version and struct size; Swift cannot call macros, so these wrap them.
#include <zlib.h>

static inline int cox_inflate_init(z_streamp stream) { return inflateInit(stream); }
static inline int cox_deflate_init(z_streamp stream, int level) { return deflateInit(stream, level); }
