/* dreamlake._core: the queue of one session's log or one track, as bytes, the lines made of
   it, and the native writer that writes them without the GIL.

   The boundary with Python is written down in docs/core.md (what each side owns, the loan,
   who holds which lock and waits for whom); in short:
   - A caller's push copies what a record needs (time, level, message text, the metadata
     as JSON bytes) into the ring and returns: no Python object made by the call is kept,
     except the metadata of a record holding tensors, kept until the writer resolves it.
   - Python's writer takes a batch (`take`), formats it into JSON Lines (`format`, one call
     at a time per ring, with the GIL released once such metadata is resolved), writes it
     under flock and `commit`s it, or formats it again with other numbers after a failure.
   - The native writer does the same for the rings Python lent it, never taking the GIL.
   - A ring's offsets change under its own mutex, held for a few instructions and never
     across I/O or a call into Python; `format` reads only records between `tail` and
     `taken`, which no push or take-back touches, from the buffer it started with.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "_shortest.h"

#define ALIGN 8
#define HEAD_SIZE 24
#define WRAP UINT32_MAX   /* a record size meaning "the rest of the buffer is empty: go to its start" */
#define META_NONE 0
#define META_TEXT 1
#define META_OBJECT 2     /* the metadata is a Python object in `objects`, resolved by the writer */
#define FLAG_VOID 1       /* taken back by its caller: not written */
#define MIN_CAPACITY (64 * 1024)
#define MAX_RECORD (1u << 31)
#define NATIVE_BATCH 1024 /* records per write of the native writer, at most (as the Python writer's) */
#define NATIVE_INTERVAL 100000000 /* ns between the native writer's rounds when no ring says */

/* Counters read without the ring's lock (len(), the hot paths' mark checks) are atomics,
   changed only under it. */
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define STORE(x, v) atomic_store_explicit(&(x), (v), memory_order_relaxed)
#define ADD(x, n) STORE(x, LOAD(x) + (n))

static const char *LEVELS[] = {"debug", "info", "warn", "error", "fatal"};
#define N_LEVELS 5

typedef struct {
    uint32_t size;  /* the whole record, head included, rounded up to ALIGN */
    uint8_t level;
    uint8_t meta;
    uint8_t flags;
    uint8_t unused;
    uint32_t message_len;
    uint32_t meta_len;
    int64_t ns;
} Head;

/* Lines being made: a buffer that grows, or, when `fixed`, one that fails when full. */
typedef struct {
    char *data;
    size_t len, cap;
    int failed;
    int fixed;
} Out;

typedef struct Ring {
    PyObject_HEAD
    pthread_mutex_t lock; /* the offsets below; held briefly, never across I/O or a call into Python */
    char *buf;
    uint64_t capacity;   /* bytes, a multiple of ALIGN */
    uint64_t head;       /* offsets grow for ever; the byte is at offset % capacity */
    uint64_t taken;      /* records before it are the writer's */
    uint64_t tail;       /* records before it are written */
    uint64_t last;       /* the newest record */
    int64_t serial_head; /* the serial number the next record gets */
    int64_t serial_taken;
    int64_t serial_tail;
    _Atomic Py_ssize_t queued;   /* records after `taken`, not taken back */
    _Atomic Py_ssize_t pending;  /* records between tail and taken, not taken back */
    _Atomic Py_ssize_t mark;     /* push() returns the record's serial + 1 once `queued` reaches it, else 0 */
    _Atomic int64_t written;     /* batches committed: a caller waiting for room waits for it to change */
    uint64_t limit;      /* the most bytes the ring grows to */
    int points;          /* a track's points, not log records */
    char *reading;       /* the buffer a format reads without the lock, or NULL */
    char *retired;       /* a buffer replaced while a format read it: freed when it ends */
    PyObject *objects;   /* serial -> metadata object (tensors), until committed */
    /* The file, while lent to the native writer (see "the native writer" below). */
    atomic_int lent;     /* the native writer may write it */
    int busy;            /* the native writer is writing it (under native.mutex) */
    int listed;          /* in native.rings, which holds a reference */
    struct Ring *prev, *next;
    int fd;              /* the file's descriptor, or -1: open `path` for each write */
    char *path;
    int64_t fsize;       /* the file's size after our last write: any other means another writer */
    int64_t fnext;       /* the number the next line gets */
    int64_t fwrites;     /* batches written since lent */
    Py_ssize_t wake_at;  /* the mark while the session is simply open */
    int64_t interval_ns; /* the session's write_interval */
    Out out;             /* the native writer's lines for this ring, while it writes them */
} Ring;

static uint64_t rounded(uint64_t n) { return (n + ALIGN - 1) & ~(uint64_t)(ALIGN - 1); }

static Head *head_in(const char *buf, uint64_t capacity, uint64_t offset) {
    return (Head *)(buf + offset % capacity);
}

static Head *at(Ring *r, uint64_t offset) { return head_in(r->buf, r->capacity, offset); }

/* The offset of the record at `off`, past a wrap marker. */
static uint64_t next_in(const char *buf, uint64_t capacity, uint64_t off) {
    if (head_in(buf, capacity, off)->size == WRAP) off += capacity - off % capacity;
    return off;
}

static uint64_t next_record(Ring *r, uint64_t off) { return next_in(r->buf, r->capacity, off); }

/* Room for `size` bytes at the head, wrapping if the end is too short: 0; 1 if the ring is
   full; -1 without memory. Grows, up to `limit`, by copying the records in order to the start
   of a new buffer. A record bigger than `limit` gets a ring of its own size once the ring is
   empty; while it is held, the others still have only `limit` bytes. */
static int make_room(Ring *r, uint64_t size) {
    uint64_t used = r->head - r->tail;
    uint64_t pos = r->head % r->capacity;
    uint64_t to_end = r->capacity - pos;
    if (r->capacity > r->limit && used > 0 && used + size > r->limit) return 1;
    if (used + (size <= to_end ? size : to_end + size) <= r->capacity) {
        if (size > to_end) { /* mark the end empty and go on at the buffer's start */
            ((Head *)(r->buf + pos))->size = WRAP;
            r->head += to_end;
        }
        return 0;
    }
    if (r->capacity >= r->limit && used > 0) return 1;
    uint64_t grown = r->capacity * 2;
    while (grown < used + 2 * size) grown *= 2;
    uint64_t most = r->limit > size ? r->limit : rounded(size);
    if (grown > most) grown = most;
    if (used + size > grown) return 1;
    char *buf = PyMem_RawMalloc(grown);
    if (buf == NULL) return -1;
    uint64_t off = r->tail, out = 0, taken_at = 0, last = 0;
    while (off < r->head) {
        off = next_record(r, off);
        Head *h = at(r, off);
        if (off < r->taken) taken_at = out + h->size;
        last = out;
        memcpy(buf + out, h, h->size);
        out += h->size;
        off += h->size;
    }
    if (r->buf == r->reading) r->retired = r->buf; /* format() reads it: it frees it */
    else PyMem_RawFree(r->buf);
    r->buf = buf;
    r->capacity = grown;
    r->tail = 0;
    r->taken = taken_at;
    r->head = out;
    r->last = last;
    return 0;
}

/* The UTF-8 of `text`, or of its cleaned copy (lone surrogates as \udXXX) via `clean`. */
static const char *utf8_of(PyObject *text, Py_ssize_t *len, PyObject **keep) {
    const char *s = PyUnicode_AsUTF8AndSize(text, len);
    if (s != NULL) return s;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return NULL;
    PyErr_Clear();
    *keep = PyUnicode_AsEncodedString(text, "utf-8", "backslashreplace");
    if (*keep == NULL) return NULL;
    *len = PyBytes_GET_SIZE(*keep);
    return PyBytes_AS_STRING(*keep);
}

static void drop_object(Ring *r, int64_t serial) {
    PyObject *key = PyLong_FromLongLong(serial);
    if (key == NULL) {
        PyErr_Clear();
        return;
    }
    if (PyDict_DelItem(r->objects, key) < 0) PyErr_Clear();
    Py_DECREF(key);
}

static PyObject *push_text(Ring *r, int64_t ns, int level, PyObject *message, int meta, const char *meta_s,
                           Py_ssize_t meta_len, PyObject *data, PyObject *keep_meta);

/* Push (ns, level, message, data): data None, JSON text (bytes or str), or an object that the
   writer resolves. The token: 0, the serial + 1 of a record at the mark, or -1 for no room. */
static PyObject *push_record(Ring *r, int64_t ns, int level, PyObject *message, PyObject *data) {
    Py_ssize_t meta_len = 0;
    const char *meta_s = NULL;
    PyObject *keep_meta = NULL;
    int meta;
    if (data == Py_None) {
        meta = META_NONE;
    } else if (PyBytes_CheckExact(data)) {
        meta = META_TEXT;
        meta_s = PyBytes_AS_STRING(data);
        meta_len = PyBytes_GET_SIZE(data);
    } else if (PyUnicode_CheckExact(data)) {
        meta = META_TEXT;
        meta_s = utf8_of(data, &meta_len, &keep_meta);
        if (meta_s == NULL) return NULL;
    } else {
        meta = META_OBJECT;
    }
    return push_text(r, ns, level, message, meta, meta_s, meta_len, data, keep_meta);
}

/* push_record() of metadata already as text (`meta_s`, kept alive by `keep_meta`, which this
   takes), or of `data` as an object (META_OBJECT). */
static PyObject *push_text(Ring *r, int64_t ns, int level, PyObject *message, int meta, const char *meta_s,
                           Py_ssize_t meta_len, PyObject *data, PyObject *keep_meta) {
    Py_ssize_t message_len = 0;
    const char *message_s = "";
    PyObject *keep_message = NULL;
    if (message != NULL) {
        if (!PyUnicode_Check(message)) {
            Py_XDECREF(keep_meta);
            PyErr_Format(PyExc_TypeError, "message must be a str, got %.100s", Py_TYPE(message)->tp_name);
            return NULL;
        }
        message_s = utf8_of(message, &message_len, &keep_message);
        if (message_s == NULL) {
            Py_XDECREF(keep_meta);
            return NULL;
        }
    }
    uint64_t size = rounded((uint64_t)HEAD_SIZE + (uint64_t)message_len + (uint64_t)meta_len);
    if ((uint64_t)message_len >= MAX_RECORD || (uint64_t)meta_len >= MAX_RECORD || size >= MAX_RECORD) {
        Py_XDECREF(keep_message);
        Py_XDECREF(keep_meta);
        PyErr_SetString(PyExc_ValueError, "a record must be smaller than 2 GB");
        return NULL;
    }
    if (meta == META_OBJECT) { /* first: nothing can fail once room is made */
        PyObject *key = PyLong_FromLongLong(r->serial_head);
        if (key == NULL || PyDict_SetItem(r->objects, key, data) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(keep_message);
            Py_XDECREF(keep_meta);
            return NULL;
        }
        Py_DECREF(key);
    }
    pthread_mutex_lock(&r->lock);
    int room = make_room(r, size);
    if (room != 0) {
        pthread_mutex_unlock(&r->lock);
        Py_XDECREF(keep_message);
        Py_XDECREF(keep_meta);
        if (meta == META_OBJECT) drop_object(r, r->serial_head);
        if (room < 0) return PyErr_NoMemory();
        return PyLong_FromLong(-1);  /* full: the caller waits for room, or drops */
    }
    Head *h = at(r, r->head);
    h->size = (uint32_t)size;
    h->level = (uint8_t)level;
    h->meta = (uint8_t)meta;
    h->flags = 0;
    h->unused = 0;
    h->message_len = (uint32_t)message_len;
    h->meta_len = (uint32_t)meta_len;
    h->ns = ns;
    char *body = (char *)h + HEAD_SIZE;
    if (message_len) memcpy(body, message_s, (size_t)message_len);
    if (meta_len) memcpy(body + message_len, meta_s, (size_t)meta_len);
    r->last = r->head;
    r->head += size;
    int64_t serial = r->serial_head++;
    ADD(r->queued, 1);
    int at_mark = LOAD(r->queued) >= LOAD(r->mark);
    pthread_mutex_unlock(&r->lock);
    Py_XDECREF(keep_message);
    Py_XDECREF(keep_meta);
    return PyLong_FromLongLong(at_mark ? serial + 1 : 0);
}

static PyObject *Ring_push(Ring *r, PyObject *const *args, Py_ssize_t nargs) {
    if (r->points || nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "push(ns, level, message, metadata) on a log's ring");
        return NULL;
    }
    int64_t ns = PyLong_AsLongLong(args[0]);
    if (ns == -1 && PyErr_Occurred()) return NULL;
    long level = PyLong_AsLong(args[1]);
    if (level == -1 && PyErr_Occurred()) return NULL;
    if (level < 0 || level >= N_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "level must be an index of LEVELS");
        return NULL;
    }
    return push_record(r, ns, (int)level, args[2], args[3]);
}

static PyObject *Ring_push_point(Ring *r, PyObject *const *args, Py_ssize_t nargs) {
    if (!r->points || nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "push_point(ns, data) on a track's ring");
        return NULL;
    }
    int64_t ns = PyLong_AsLongLong(args[0]);
    if (ns == -1 && PyErr_Occurred()) return NULL;
    return push_record(r, ns, 0, NULL, args[1]);
}


/* The writer takes up to `most` queued records (under the lock); with `plain`, only up to
   the first that holds an object (which needs Python). */
static Py_ssize_t take_records(Ring *r, Py_ssize_t most, int plain) {
    Py_ssize_t taken = 0;
    while (taken < most && r->taken < r->head) {
        uint64_t off = next_record(r, r->taken);
        Head *h = at(r, off);
        if (plain && h->meta == META_OBJECT && !(h->flags & FLAG_VOID)) break;
        r->taken = off + h->size;
        r->serial_taken++;
        if (!(h->flags & FLAG_VOID)) {
            taken++;
            ADD(r->queued, -1);
            ADD(r->pending, 1);
        }
    }
    /* void records right after the batch go with it */
    while (r->taken < r->head) {
        uint64_t off = next_record(r, r->taken);
        Head *h = at(r, off);
        if (!(h->flags & FLAG_VOID)) break;
        r->taken = off + h->size;
        r->serial_taken++;
    }
    return taken;
}

static PyObject *Ring_take(Ring *r, PyObject *arg) {
    Py_ssize_t most = PyLong_AsSsize_t(arg);
    if (most == -1 && PyErr_Occurred()) return NULL;
    pthread_mutex_lock(&r->lock);
    Py_ssize_t taken = take_records(r, most, 0);
    pthread_mutex_unlock(&r->lock);
    return PyLong_FromSsize_t(taken);
}

/* -- lines ------------------------------------------------------------------------------- */

static int reserve(Out *o, size_t more) {
    if (o->len + more <= o->cap) return 0;
    if (o->fixed) {
        o->failed = 1;
        return -1;
    }
    size_t need = o->len + more;
    size_t cap = o->cap ? o->cap + o->cap / 2 : 4096;
    if (cap < need) cap = need + need / 4;
    char *data = PyMem_RawRealloc(o->data, cap);
    if (data == NULL) {
        o->failed = 1;
        return -1;
    }
    o->data = data;
    o->cap = cap;
    return 0;
}

static void put(Out *o, const char *s, size_t n) {
    if (reserve(o, n) < 0) return;
    memcpy(o->data + o->len, s, n);
    o->len += n;
}

static void put_str(Out *o, const char *s) { put(o, s, strlen(s)); }

#define PUT_LITERAL(o, text) put((o), (text), sizeof(text) - 1)

/* `v` in decimal (a line's number: never negative, but written right if it were). */
static void put_int(Out *o, long long v) {
    char text[20];
    put(o, text, decimal_int(v, text));
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether any of the 8 bytes of `x` must be escaped in a JSON string: below 0x20, '"' or '\\'
   (a zero byte of x - 0x20.., of x ^ '"'.., of x ^ '\\'..; bytes of 0x80 and above never are). */
static int word_needs_escape(uint64_t x) {
    uint64_t quote = x ^ (ONES * '"'), backslash = x ^ (ONES * '\\');
    return (((x - ONES * 0x20) & ~x) | ((quote - ONES) & ~quote) | ((backslash - ONES) & ~backslash)) & HIGHS
               ? 1
               : 0;
}

/* How many bytes from `i` on need no escape, looking 8 at a time. */
static size_t plain_run(const char *s, size_t i, size_t n) {
    size_t from = i;
    uint64_t word;
    while (i + 8 <= n) {
        memcpy(&word, s + i, 8);
        if (word_needs_escape(word)) break;
        i += 8;
    }
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '"' || c == '\\') break;
        i++;
    }
    return i - from;
}

/* JSON string of UTF-8 `s`: what orjson writes (", \\ and control characters escaped), the
   runs between escapes copied whole. */
static void put_json_string(Out *o, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t escaped = n + 2;
    for (size_t i = plain_run(s, 0, n); i < n; i++, i += plain_run(s, i, n)) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20) escaped += (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') ? 1 : 5;
        else escaped += 1;
    }
    if (reserve(o, escaped) < 0) return;
    char *w = o->data + o->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        size_t run = plain_run(s, i, n);
        memcpy(w, s + i, run);
        w += run;
        i += run;
        if (i == n) break;
        unsigned char c = (unsigned char)s[i];
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        case '\b': *w++ = 'b'; break;
        case '\f': *w++ = 'f'; break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w++ = '"';
    o->len = (size_t)(w - o->data);
}

typedef struct {
    int64_t second;
    char text[80];  /* "YYYY-MM-DDTHH:MM:SS" of `second` (a year past 9999 takes more digits) */
    size_t len;
} Clock;

/* `"2025-10-25T10:30:00.000123Z"`, with its quotes. */
static void put_timestamp(Out *o, Clock *clock, int64_t ns) {
    int64_t us = ns >= 0 ? ns / 1000 : -((-ns + 999) / 1000);
    int64_t second = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
    long frac = (long)(us - second * 1000000);
    if (second != clock->second) {
        time_t t = (time_t)second;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL) memset(&tm, 0, sizeof tm);
        int n = snprintf(clock->text, sizeof clock->text, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        clock->len = n < 0 ? 0 : (size_t)n < sizeof clock->text ? (size_t)n : sizeof clock->text - 1;
        clock->second = second;
    }
    if (reserve(o, clock->len + 10) < 0) return;
    char *w = o->data + o->len;
    *w++ = '"';
    memcpy(w, clock->text, clock->len);
    w += clock->len;
    *w++ = '.';
    for (int i = 5; i >= 0; i--, frac /= 10) w[i] = (char)('0' + frac % 10);
    w += 6;
    *w++ = 'Z';
    *w++ = '"';
    o->len = (size_t)(w - o->data);
}

static void put_log_line(Out *o, Clock *clock, int64_t ns, const char *level, const char *message,
                         size_t message_len, const char *meta, size_t meta_len, long long sequence) {
    PUT_LITERAL(o, "{\"timestamp\":");
    put_timestamp(o, clock, ns);
    PUT_LITERAL(o, ",\"level\":\"");
    put_str(o, level);
    PUT_LITERAL(o, "\",\"message\":");
    put_json_string(o, message, message_len);
    PUT_LITERAL(o, ",\"metadata\":");
    if (meta == NULL) PUT_LITERAL(o, "null");
    else put(o, meta, meta_len);
    PUT_LITERAL(o, ",\"sequenceNumber\":");
    put_int(o, sequence);
    PUT_LITERAL(o, "}\n");
}

static void put_point_line(Out *o, Clock *clock, int64_t ns, const char *data, size_t data_len,
                           long long index) {
    PUT_LITERAL(o, "{\"index\":");
    put_int(o, index);
    PUT_LITERAL(o, ",\"data\":");
    if (data == NULL) PUT_LITERAL(o, "null");
    else put(o, data, data_len);
    PUT_LITERAL(o, ",\"createdAt\":");
    put_timestamp(o, clock, ns);
    PUT_LITERAL(o, "}\n");
}

/* The lines of the records in [start, end) of `buf`, numbered from `number`; the metadata of
   those holding objects is the next item of `resolved` (a list of bytes, or NULL when there are
   none). Needs neither the GIL nor the lock: the caller keeps the range and the buffer alive. */
static void format_records(Out *o, Clock *clock, const char *buf, uint64_t capacity, uint64_t start,
                           uint64_t end, int points, long long number, PyObject *resolved) {
    Py_ssize_t next_object = 0;
    for (uint64_t off = start; off < end && !o->failed;) {
        off = next_in(buf, capacity, off);
        const Head *h = head_in(buf, capacity, off);
        off += h->size;
        if (h->flags & FLAG_VOID) continue;
        const char *body = (const char *)h + HEAD_SIZE;
        const char *meta = h->meta == META_TEXT ? body + h->message_len : NULL;
        size_t meta_len = h->meta_len;
        if (h->meta == META_OBJECT) { /* the list is ours and its bytes immutable: read without the GIL */
            PyObject *bytes = PyList_GET_ITEM(resolved, next_object++);
            meta = PyBytes_AS_STRING(bytes);
            meta_len = (size_t)PyBytes_GET_SIZE(bytes);
        }
        if (points) put_point_line(o, clock, h->ns, meta, meta_len, number++);
        else put_log_line(o, clock, h->ns, LEVELS[h->level], body, h->message_len, meta, meta_len, number++);
    }
}

/* A format is over: the buffer it read may be freed (under the lock). */
static void end_reading(Ring *r) {
    r->reading = NULL;
    if (r->retired != NULL) {
        PyMem_RawFree(r->retired);
        r->retired = NULL;
    }
}

/* format(first, notices, resolve) -> bytes: the notices (log records as (ns, level, message,
   metadata text)) then the taken records, numbered from `first`. */
static PyObject *Ring_format(Ring *r, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "format(first, notices, resolve)");
        return NULL;
    }
    long long number = PyLong_AsLongLong(args[0]);
    if (number == -1 && PyErr_Occurred()) return NULL;
    PyObject *notices = args[1], *resolve = args[2];
    if (!PyList_Check(notices)) {
        PyErr_SetString(PyExc_TypeError, "notices must be a list");
        return NULL;
    }
    pthread_mutex_lock(&r->lock);
    int reading = r->reading != NULL;
    pthread_mutex_unlock(&r->lock);
    if (reading || LOAD(r->lent)) { /* the writer is the only caller: this is a mistake, not a race to allow */
        PyErr_SetString(PyExc_RuntimeError,
                        reading ? "format() is already running on this ring in another thread"
                                : "format() of a ring lent to the native writer: reclaim() it first");
        return NULL;
    }
    Out o = {NULL, 0, 0, 0, 0};
    Clock clock = {INT64_MIN, {0}};
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(notices); i++) {
        PyObject *n = PyList_GET_ITEM(notices, i);
        long long ns;
        const char *level, *message, *meta;
        Py_ssize_t message_len, meta_len;
        if (!PyArg_ParseTuple(n, "Lss#s#", &ns, &level, &message, &message_len, &meta, &meta_len)) {
            PyMem_RawFree(o.data);
            return NULL;
        }
        put_log_line(&o, &clock, ns, level, message, (size_t)message_len, meta, (size_t)meta_len, number++);
    }
    /* Tensors first, with the GIL: made numbers by Python, in order, before the lines. Their
       serials are found first: a conversion may log, and a push may move the records. */
    PyObject *resolved = NULL, *serials = NULL;
    uint64_t off, end;
    if (PyDict_GET_SIZE(r->objects) > 0) {
        if ((resolved = PyList_New(0)) == NULL || (serials = PyList_New(0)) == NULL) goto fail;
        /* the serials under the lock, then the objects: no Python call under the lock */
        pthread_mutex_lock(&r->lock);
        Py_ssize_t n = 0, most = LOAD(r->pending);
        int64_t *found = PyMem_RawMalloc(sizeof(int64_t) * (size_t)(most > 0 ? most : 1));
        if (found != NULL) {
            int64_t serial = r->serial_tail;
            for (off = r->tail, end = r->taken; off < end && n < most; serial++) {
                off = next_record(r, off);
                Head *h = at(r, off);
                off += h->size;
                if (h->meta == META_OBJECT && !(h->flags & FLAG_VOID)) found[n++] = serial;
            }
        }
        pthread_mutex_unlock(&r->lock);
        if (found == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *key = PyLong_FromLongLong(found[i]);
            int added = key == NULL ? -1 : PyList_Append(serials, key);
            Py_XDECREF(key);
            if (added < 0) {
                PyMem_RawFree(found);
                goto fail;
            }
        }
        PyMem_RawFree(found);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(serials); i++) {
            PyObject *value = PyDict_GetItemWithError(r->objects, PyList_GET_ITEM(serials, i));
            PyObject *bytes = NULL;
            if (value != NULL) {
                Py_INCREF(value);
                bytes = PyObject_CallOneArg(resolve, value);
                Py_DECREF(value);
            }
            if (bytes == NULL || !PyBytes_Check(bytes)) {
                if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_Exception)) goto fail; /* Ctrl-C */
                PyErr_Clear();
                Py_XDECREF(bytes);
                bytes = PyBytes_FromString("{\"unserializable\":\"metadata lost\"}");
                if (bytes == NULL) goto fail;
            }
            int added = PyList_Append(resolved, bytes);
            Py_DECREF(bytes);
            if (added < 0) goto fail;
        }
        Py_CLEAR(serials);
    }
    /* Then the lines, with the GIL released, from the buffer as it is now: a push that grows
       the ring meanwhile leaves this buffer to us (see make_room). */
    pthread_mutex_lock(&r->lock);
    const char *buf = r->buf;  /* everything read without the GIL is taken now: a growth */
    uint64_t capacity = r->capacity, start = r->tail;  /* moves the ring's own offsets */
    end = r->taken;
    r->reading = r->buf;
    pthread_mutex_unlock(&r->lock);
    int points = r->points;
    Py_BEGIN_ALLOW_THREADS
    format_records(&o, &clock, buf, capacity, start, end, points, number, resolved);
    Py_END_ALLOW_THREADS
    pthread_mutex_lock(&r->lock);
    end_reading(r);
    pthread_mutex_unlock(&r->lock);
    Py_XDECREF(resolved);
    if (o.failed) {
        PyMem_RawFree(o.data);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize(o.data ? o.data : "", (Py_ssize_t)o.len);
    PyMem_RawFree(o.data);
    return out;
fail:
    Py_XDECREF(resolved);
    Py_XDECREF(serials);
    PyMem_RawFree(o.data);
    return NULL;
}

/* An empty ring grown for one record bigger than its limit gives the memory back. */
static void shrink(Ring *r) {
    if (r->capacity <= r->limit || r->reading != NULL) return;
    char *buf = PyMem_RawMalloc(MIN_CAPACITY);
    if (buf == NULL) return;
    PyMem_RawFree(r->buf);
    r->buf = buf;
    r->capacity = MIN_CAPACITY;
}

static void forget_objects(Ring *r, int64_t from, int64_t to) {
    if (PyDict_GET_SIZE(r->objects) == 0) return;
    for (int64_t s = from; s < to; s++) drop_object(r, s);
}

/* The taken records are written (under the lock). */
static void commit_taken(Ring *r) {
    r->tail = r->taken;
    r->serial_tail = r->serial_taken;
    STORE(r->pending, 0);
    ADD(r->written, 1);
    if (r->tail == r->head) { /* empty: start over at the buffer's start */
        r->tail = r->taken = r->head = r->last = 0;
        shrink(r);
    }
}

static PyObject *Ring_commit(Ring *r, PyObject *Py_UNUSED(ignored)) {
    pthread_mutex_lock(&r->lock);
    int64_t from = r->serial_tail, to = r->serial_taken;
    commit_taken(r);
    pthread_mutex_unlock(&r->lock);
    forget_objects(r, from, to);
    Py_RETURN_NONE;
}

/* The queued record numbered `serial`, or NULL if the writer took it (or there is none). */
static Head *queued_record(Ring *r, int64_t serial) {
    if (serial < r->serial_taken || serial >= r->serial_head) return NULL;
    if (serial == r->serial_head - 1) return at(r, r->last);
    uint64_t off = r->taken;
    for (int64_t s = r->serial_taken; off < r->head; s++) {
        off = next_record(r, off);
        Head *h = at(r, off);
        if (s == serial) return h;
        off += h->size;
    }
    return NULL;
}

/* Take back a queued record (under the lock): 0 if the writer took it (or it is gone), 1, or 2
   if its object must be dropped (by the caller, after the lock). */
static int take_back(Ring *r, int64_t serial) {
    Head *h = queued_record(r, serial);
    if (h == NULL || (h->flags & FLAG_VOID)) return 0;
    h->flags |= FLAG_VOID;
    ADD(r->queued, -1);
    int object = h->meta == META_OBJECT;
    if (LOAD(r->queued) == 0) { /* only taken-back records are queued: they hold no room */
        r->taken = r->head;
        r->serial_taken = r->serial_head;
        if (LOAD(r->pending) == 0) { /* nothing at all: start over at the buffer's start */
            r->serial_tail = r->serial_taken;
            r->tail = r->taken = r->head = r->last = 0;
        }
    }
    return object ? 2 : 1;
}

/* remove(serial) -> bool: take back a queued record, unless the writer took it. */
static PyObject *Ring_remove(Ring *r, PyObject *arg) {
    long long serial = PyLong_AsLongLong(arg);
    if (serial == -1 && PyErr_Occurred()) return NULL;
    pthread_mutex_lock(&r->lock);
    int done = take_back(r, serial);
    pthread_mutex_unlock(&r->lock);
    if (done == 2) drop_object(r, serial);
    return PyBool_FromLong(done != 0);
}

/* pop(since, end) -> bool: take back the newest record that is not taken back already, if
   the writer has not taken it and its serial is in [since, end). */
static PyObject *Ring_pop(Ring *r, PyObject *const *args, Py_ssize_t nargs) {
    long long since, end;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pop(since, end)");
        return NULL;
    }
    since = PyLong_AsLongLong(args[0]);
    if (since == -1 && PyErr_Occurred()) return NULL;
    end = PyLong_AsLongLong(args[1]);
    if (end == -1 && PyErr_Occurred()) return NULL;
    int done = 0;
    int64_t s;
    pthread_mutex_lock(&r->lock);
    for (s = r->serial_head - 1; s >= r->serial_taken && s >= since; s--) {
        Head *h = queued_record(r, s);
        if (h == NULL || (h->flags & FLAG_VOID)) continue;
        if (s < end) done = take_back(r, s); /* else the newest is another caller's */
        break;
    }
    pthread_mutex_unlock(&r->lock);
    if (done == 2) drop_object(r, s);
    return PyBool_FromLong(done != 0);
}

/* clear(): forget everything, taken records too (a forked child: the parent writes them). */
static PyObject *Ring_clear(Ring *r, PyObject *Py_UNUSED(ignored)) {
    if (LOAD(r->lent)) {
        PyErr_SetString(PyExc_RuntimeError, "clear() of a ring lent to the native writer: reclaim() it first");
        return NULL;
    }
    pthread_mutex_lock(&r->lock);
    r->tail = r->taken = r->head = r->last = 0;
    r->serial_tail = r->serial_taken = r->serial_head;
    STORE(r->queued, 0);
    STORE(r->pending, 0);
    shrink(r);
    pthread_mutex_unlock(&r->lock);
    PyDict_Clear(r->objects);
    Py_RETURN_NONE;
}

/* -- the native writer --------------------------------------------------------------------

   One thread per process writes the rings that Python lent it, without ever taking the GIL:
   every `interval` (the shortest of the lent rings'), or at once when a ring reaches its mark
   (`wake()`). For each lent ring it takes a batch of plain records (none holding an object),
   formats it, and appends it under flock, when the file is as it left it (same size, not
   deleted): then it commits the batch, counts the write and lowers a raised mark. Anything
   else (an object first in the queue, another writer's lines, a deleted file, a failed or
   short write, no memory) ends the loan: the batch stays taken, the file as it was, and
   Python's writer takes over (`reclaim()`), as it does for flush, close, notices and errors.

   `native.mutex` guards the list of lent rings, each ring's `busy`, and the thread's state.
   Python lends and reclaims with the GIL held; `reclaim()` waits, with the GIL released,
   while the thread writes that ring, and `wait_written()` (a caller whose queue is full) until
   it has written some. The thread holds no lock during I/O except the file's
   flock, and never the GIL. */

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;  /* the thread waits on it */
    pthread_cond_t idle;  /* progress: a batch written, a ring no longer busy or lent, the thread stopping or gone */
    pthread_t thread;
    int running, joinable, stop, woken;
    Ring *rings;          /* lent (or whose loan ended, not yet reclaimed), each holding a reference */
} native;

static atomic_int fault_errno, fault_count; /* a fault to produce, for tests: see fail_writes() */

static int64_t monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

/* Write all of `data`: 0, or an errno (a fault produced for a test writes half first). */
static int write_all(int fd, const char *data, size_t len) {
    if (LOAD(fault_count) > 0) {
        ADD(fault_count, -1);
        if (write(fd, data, len / 2) < 0) return errno;
        return LOAD(fault_errno);
    }
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

#define TAIL_LOOK (64 * 1024) /* bytes read back, at most, to find where another's last line begins */

/* Whether the line that ends before `end` (and begins at `floor` or after: the file ended with
   a newline there) begins as every log record does; reads back at most TAIL_LOOK bytes. */
static int line_begins_as_record(int fd, int64_t floor, int64_t end) {
    static const char head[] = "{\"timestamp\":\"";
    char block[4096];
    int64_t pos = end;
    while (pos > floor && end - pos < TAIL_LOOK) {
        int64_t from = pos - (int64_t)sizeof block > floor ? pos - (int64_t)sizeof block : floor;
        if (pread(fd, block, (size_t)(pos - from), (off_t)from) != (ssize_t)(pos - from)) return 0;
        const char *newline = memrchr(block, '\n', (size_t)(pos - from));
        if (newline != NULL) {
            from += newline - block + 1;
            pos = from;
            break;
        }
        pos = from;
    }
    if (pos > floor && end - pos >= TAIL_LOOK) return 0; /* longer than we look: Python reads it */
    char start[sizeof head - 1];
    if (end - pos < (int64_t)sizeof start) return 0;
    if (pread(fd, start, sizeof start, (off_t)pos) != (ssize_t)sizeof start) return 0;
    return memcmp(start, head, sizeof start) == 0;
}

/* The number after the log record that ends the file's first `size` bytes, when its last line
   begins and ends as every log record does (`{"timestamp":"` ... `,"sequenceNumber":N}` and
   the newline): another process appended whole records after `floor`, where the file ended
   with a newline. -1 for anything else (a torn line, foreign text, a track's points, which
   number from their start): Python's writer, which parses what was appended, looks at it. */
static int64_t next_after_records(int fd, int64_t floor, int64_t size) {
    static const char key[] = ",\"sequenceNumber\":";
    const int64_t key_len = (int64_t)sizeof key - 1;
    char tail[48];
    int64_t from = size - (int64_t)sizeof tail > floor ? size - (int64_t)sizeof tail : floor;
    int64_t n = size - from;
    if (n < key_len + 3 || pread(fd, tail, (size_t)n, (off_t)from) != (ssize_t)n) return -1;
    if (tail[n - 1] != '\n' || tail[n - 2] != '}') return -1;
    int64_t first = n - 2;
    while (first > 0 && tail[first - 1] >= '0' && tail[first - 1] <= '9') first--;
    int64_t digits = n - 2 - first;
    if (digits == 0 || digits > 18 || (digits > 1 && tail[first] == '0') || first < key_len) return -1;
    if (memcmp(tail + first - key_len, key, (size_t)key_len) != 0) return -1;
    if (!line_begins_as_record(fd, floor, size - 1)) return -1;
    int64_t number = 0;
    for (int64_t i = first; i < n - 2; i++) number = number * 10 + (tail[i] - '0');
    return number + 1;
}

/* One batch of a lent ring: 0 when written, 1 when there was nothing plain to take, -1 when
   the loan must end (the batch, if any, stays taken for Python). */
static int write_batch(Ring *r) {
    pthread_mutex_lock(&r->lock);
    if (LOAD(r->pending) > 0 || r->reading != NULL) {
        pthread_mutex_unlock(&r->lock);
        return -1;
    }
    Py_ssize_t count = take_records(r, NATIVE_BATCH, 1);
    const char *buf = r->buf;
    uint64_t capacity = r->capacity, start = r->tail, end = r->taken;
    if (count == 0) {
        int objects = LOAD(r->queued) > 0;
        pthread_mutex_unlock(&r->lock);
        return objects ? -1 : 1;
    }
    r->reading = r->buf;
    pthread_mutex_unlock(&r->lock);
    Out *o = &r->out; /* kept in the ring: a forked child frees what a write under way held */
    Clock clock = {INT64_MIN, {0}};
    format_records(o, &clock, buf, capacity, start, end, r->points, (long long)r->fnext, NULL);
    int written = 0;
    int fd = r->fd;
    if (!o->failed && fd < 0) fd = open(r->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (!o->failed && fd >= 0) {
        if (flock(fd, LOCK_EX) == 0) {
            struct stat st;
            int there = fstat(fd, &st) == 0 && st.st_nlink > 0;
            int same = there && st.st_size == r->fsize;
            if (there && st.st_size > r->fsize && !r->points) {
                /* Another process appended: numbered after its last record, formatted again
                   under the lock (the records stay taken, their buffer kept by `reading`). */
                int64_t next = next_after_records(fd, r->fsize, (int64_t)st.st_size);
                if (next >= 0) {
                    r->fsize = (int64_t)st.st_size;
                    if (next != r->fnext) {
                        r->fnext = next;
                        o->len = 0;
                        format_records(o, &clock, buf, capacity, start, end, 0, (long long)next, NULL);
                    }
                    same = !o->failed;
                }
            }
            if (same) {
                if (write_all(fd, o->data, o->len) == 0) {
                    written = 1;
                } else if (ftruncate(fd, (off_t)r->fsize) != 0) {
                    r->fsize = -1; /* Python looks at the whole file before its write */
                }
            }
            flock(fd, LOCK_UN);
        }
        if (r->fd < 0) close(fd);
    }
    pthread_mutex_lock(&r->lock);
    end_reading(r);
    pthread_mutex_unlock(&r->lock);
    size_t len = o->len;
    PyMem_RawFree(o->data);
    *o = (Out){NULL, 0, 0, 0, 0};
    if (!written) return -1;
    r->fsize += (int64_t)len;
    r->fnext += count;
    r->fwrites++;
    pthread_mutex_lock(&r->lock);
    commit_taken(r);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

/* Wake whoever waits on `native.idle`: a batch was written, or a loan ended. */
static void progress(void) {
    pthread_mutex_lock(&native.mutex);
    pthread_cond_broadcast(&native.idle);
    pthread_mutex_unlock(&native.mutex);
}

/* Write what a lent ring holds; end the loan if Python must take over. */
static void write_lent(Ring *r) {
    while (LOAD(r->lent) && LOAD(r->queued) > 0) {
        int status = write_batch(r);
        if (status < 0) STORE(r->lent, 0);
        progress(); /* callers waiting for room look again */
        if (status != 0) break;
    }
    Py_ssize_t mark = LOAD(r->mark); /* raised when the queue reached it: back, unless Python set it to 0 */
    if (mark > r->wake_at) atomic_compare_exchange_strong(&r->mark, &mark, r->wake_at);
}

static void *native_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&native.mutex);
    while (!native.stop) {
        if (!native.woken) {
            int64_t interval = NATIVE_INTERVAL;
            for (Ring *r = native.rings; r != NULL; r = r->next)
                if (LOAD(r->lent) && r->interval_ns > 0 && r->interval_ns < interval) interval = r->interval_ns;
            int64_t at = monotonic_ns() + interval;
            struct timespec deadline = {(time_t)(at / 1000000000), (long)(at % 1000000000)};
            pthread_cond_timedwait(&native.wake, &native.mutex, &deadline);
        }
        native.woken = 0;
        for (Ring *r = native.rings; r != NULL && !native.stop; r = r->next) {
            if (!LOAD(r->lent) || LOAD(r->queued) == 0) continue;
            r->busy = 1; /* reclaim() waits for it to end: r stays listed until then */
            pthread_mutex_unlock(&native.mutex);
            write_lent(r);
            pthread_mutex_lock(&native.mutex);
            r->busy = 0;
            pthread_cond_broadcast(&native.idle);
        }
    }
    native.running = 0;
    pthread_cond_broadcast(&native.idle);
    pthread_mutex_unlock(&native.mutex);
    return NULL;
}

static void native_init(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&native.mutex, NULL);
    pthread_cond_init(&native.wake, &attr);
    pthread_cond_init(&native.idle, &attr);
    pthread_condattr_destroy(&attr);
}

/* In a forked child: no thread writes, whatever held the locks in the parent. */
static void native_after_fork_child(void) {
    native_init();
    native.running = native.joinable = native.stop = native.woken = 0;
    for (Ring *r = native.rings; r != NULL; r = r->next) {
        pthread_mutex_init(&r->lock, NULL);
        STORE(r->lent, 0);
        r->busy = 0;
        end_reading(r); /* a format or a write under way in the parent: no thread here goes on with it */
        PyMem_RawFree(r->out.data);
        r->out = (Out){NULL, 0, 0, 0, 0};
    }
}

/* start() -> bool: start the thread unless it runs; False if it cannot. */
static PyObject *native_start(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    (void)module;
    pthread_mutex_lock(&native.mutex);
    int ok = 1;
    if (native.running) {
        native.stop = 0;
    } else {
        if (native.joinable) pthread_join(native.thread, NULL); /* it left: reap it */
        native.joinable = 0;
        native.stop = native.woken = 0;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals are the main thread's: the thread gets none */
        ok = pthread_create(&native.thread, NULL, native_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        native.running = native.joinable = ok;
    }
    pthread_mutex_unlock(&native.mutex);
    return PyBool_FromLong(ok);
}

/* stop(timeout) -> bool: stop the thread after its current write, and wait for it to leave the
   OS, up to `timeout` seconds; False if it is still writing then. */
static PyObject *native_stop(PyObject *module, PyObject *arg) {
    (void)module;
    double timeout = PyFloat_AsDouble(arg);
    if (timeout == -1.0 && PyErr_Occurred()) return NULL;
    int gone;
    Py_BEGIN_ALLOW_THREADS
    int64_t at = monotonic_ns() + (int64_t)(timeout > 0 ? timeout * 1e9 : 0);
    struct timespec deadline = {(time_t)(at / 1000000000), (long)(at % 1000000000)};
    pthread_mutex_lock(&native.mutex);
    if (native.running) {
        native.stop = 1;
        pthread_cond_signal(&native.wake);
        pthread_cond_broadcast(&native.idle); /* callers waiting for room go to Python's writer */
        /* until it leaves, the deadline passes, or start() wants it again */
        while (native.running && native.stop && pthread_cond_timedwait(&native.idle, &native.mutex, &deadline) == 0) {
        }
    }
    gone = !native.running;
    int reap = gone && native.joinable;
    if (reap) native.joinable = 0;
    pthread_mutex_unlock(&native.mutex);
    if (reap) pthread_join(native.thread, NULL); /* returns once the OS thread is gone */
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(gone);
}

/* faults_left() -> int: how many of the faults asked for by fail_writes() are still to come. */
static PyObject *native_faults_left(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    (void)module;
    return PyLong_FromLong(LOAD(fault_count));
}

/* running() -> bool: whether the native writer's thread runs. */
static PyObject *native_running(PyObject *module, PyObject *Py_UNUSED(ignored)) {
    (void)module;
    pthread_mutex_lock(&native.mutex);
    int running = native.running && !native.stop;
    pthread_mutex_unlock(&native.mutex);
    return PyBool_FromLong(running);
}

/* fail_writes(errno, count): the native writer's next `count` writes write half their bytes,
   then fail with `errno` (a fault no real file produces on demand: tests only). */
static PyObject *native_fail_writes(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    int err, count;
    if (nargs != 2 || (err = (int)PyLong_AsLong(args[0])) < 0 || (count = (int)PyLong_AsLong(args[1])) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "fail_writes(errno, count)");
        return NULL;
    }
    STORE(fault_errno, err);
    STORE(fault_count, count);
    Py_RETURN_NONE;
}

/* lend(fd, path, size, next, wake_at, interval): the native writer may write this ring's file,
   which has `size` bytes, the next line numbered `next`, through `fd` (or, if -1, opening
   `path` for each write). */
static PyObject *Ring_lend(Ring *r, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "lend(fd, path, size, next, wake_at, interval)");
        return NULL;
    }
    int fd = (int)PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) return NULL;
    PyObject *encoded = PyUnicode_EncodeFSDefault(args[1]);
    if (encoded == NULL) return NULL;
    long long size = PyLong_AsLongLong(args[2]), next = PyLong_AsLongLong(args[3]);
    Py_ssize_t wake_at = PyLong_AsSsize_t(args[4]);
    double interval = PyFloat_AsDouble(args[5]);
    if (PyErr_Occurred()) {
        Py_DECREF(encoded);
        return NULL;
    }
    if (size < 0 || next < 0 || wake_at < 1) {
        Py_DECREF(encoded);
        PyErr_SetString(PyExc_ValueError, "lend() needs the file's size, its next number and a mark");
        return NULL;
    }
    size_t len = (size_t)PyBytes_GET_SIZE(encoded);
    char *path = PyMem_RawMalloc(len + 1);
    if (path == NULL) {
        Py_DECREF(encoded);
        return PyErr_NoMemory();
    }
    memcpy(path, PyBytes_AS_STRING(encoded), len + 1);
    Py_DECREF(encoded);
    pthread_mutex_lock(&native.mutex);
    if (r->listed) { /* lent, or its loan ended and what the thread knows is not reclaimed yet */
        pthread_mutex_unlock(&native.mutex);
        PyMem_RawFree(path);
        PyErr_SetString(PyExc_RuntimeError, "lend() of a ring not reclaimed since its last loan: reclaim() it first");
        return NULL;
    }
    PyMem_RawFree(r->path);
    r->path = path;
    r->fd = fd;
    r->fsize = size;
    r->fnext = next;
    r->fwrites = 0;
    r->wake_at = wake_at;
    r->interval_ns = (int64_t)(interval * 1e9);
    Py_INCREF(r);
    r->listed = 1;
    r->prev = NULL;
    r->next = native.rings;
    if (native.rings != NULL) native.rings->prev = r;
    native.rings = r;
    STORE(r->lent, 1);
    pthread_mutex_unlock(&native.mutex);
    Py_RETURN_NONE;
}

/* reclaim() -> (size, next, writes) or None: end the loan, waiting for a write under way; the
   file as the native writer left it (size -1: look at it again), and how many batches it
   wrote; None if the ring was not lent. */
static PyObject *Ring_reclaim(Ring *r, PyObject *Py_UNUSED(ignored)) {
    pthread_mutex_lock(&native.mutex);
    STORE(r->lent, 0);
    pthread_cond_broadcast(&native.idle); /* callers waiting for room go to Python's writer */
    if (r->busy) { /* wait without the GIL, so that the writer's callers run meanwhile */
        pthread_mutex_unlock(&native.mutex);
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&native.mutex);
        while (r->busy) pthread_cond_wait(&native.idle, &native.mutex);
        pthread_mutex_unlock(&native.mutex);
        Py_END_ALLOW_THREADS
        pthread_mutex_lock(&native.mutex);
    }
    if (!r->listed) {
        pthread_mutex_unlock(&native.mutex);
        Py_RETURN_NONE;
    }
    if (r->prev != NULL) r->prev->next = r->next;
    else native.rings = r->next;
    if (r->next != NULL) r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->listed = 0;
    long long size = r->fsize, next = r->fnext, writes = r->fwrites;
    r->fd = -1;
    pthread_mutex_unlock(&native.mutex);
    PyObject *result = Py_BuildValue("(LLL)", size, next, writes);
    Py_DECREF(r); /* the list's reference: the caller holds its own */
    return result;
}

/* unlend(): end the loan without waiting (a caller that dropped entries: Python writes the
   notice); the thread finishes a write under way, and Python's writer reclaims the ring. */
static PyObject *Ring_unlend(Ring *r, PyObject *Py_UNUSED(ignored)) {
    STORE(r->lent, 0);
    progress(); /* callers waiting for room go to Python's writer */
    Py_RETURN_NONE;
}

/* wait_written(seen, timeout) -> 1 once a batch is written after `seen` (the `written` count
   read before the push that found no room, so no batch is missed), 0 after `timeout` seconds
   without, -1 when the ring is not (or no longer) lent to a running native writer: Python's
   writer must make room. Waits with the GIL released, taking it back every 50 ms to run signal
   handlers (Ctrl-C raises here). */
static PyObject *Ring_wait_written(Ring *r, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wait_written(seen, timeout)");
        return NULL;
    }
    long long seen = PyLong_AsLongLong(args[0]);
    double timeout = PyFloat_AsDouble(args[1]);
    if (PyErr_Occurred()) return NULL;
    int64_t end = monotonic_ns() + (int64_t)(timeout > 0 ? timeout * 1e9 : 0);
    for (;;) {
        int status;
        Py_BEGIN_ALLOW_THREADS
        int64_t now = monotonic_ns(), at = end - now < 50000000 ? end : now + 50000000;
        struct timespec deadline = {(time_t)(at / 1000000000), (long)(at % 1000000000)};
        pthread_mutex_lock(&native.mutex);
        for (;;) {
            if (LOAD(r->written) != seen) status = 1;
            else if (!native.running || native.stop || !LOAD(r->lent)) status = -1;
            else if (pthread_cond_timedwait(&native.idle, &native.mutex, &deadline) == ETIMEDOUT) status = 0;
            else continue;
            break;
        }
        pthread_mutex_unlock(&native.mutex);
        Py_END_ALLOW_THREADS
        if (status != 0 || monotonic_ns() >= end) return PyLong_FromLong(status);
        if (PyErr_CheckSignals() < 0) return NULL;
    }
}

/* wake() -> bool: have the native writer write now; False if the ring is not lent to a
   running writer (Python's writer must). */
static PyObject *Ring_wake(Ring *r, PyObject *Py_UNUSED(ignored)) {
    pthread_mutex_lock(&native.mutex);
    int ok = native.running && !native.stop && LOAD(r->lent);
    if (ok) {
        native.woken = 1;
        pthread_cond_signal(&native.wake);
    }
    pthread_mutex_unlock(&native.mutex);
    return PyBool_FromLong(ok);
}

static PyObject *Ring_get_lent(Ring *r, void *Py_UNUSED(c)) { return PyBool_FromLong(LOAD(r->lent)); }

/* -- the type ---------------------------------------------------------------------------- */

static int Ring_init(Ring *r, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"points", "limit", NULL};
    int points = 0;
    unsigned long long limit = 64ull << 20;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pK", names, &points, &limit)) return -1;
    if (limit < MIN_CAPACITY) {
        PyErr_Format(PyExc_ValueError, "limit must be at least %d bytes", MIN_CAPACITY);
        return -1;
    }
    r->points = points;
    r->limit = rounded(limit);
    STORE(r->mark, 0);
    return 0;
}

/* Allocated here, not in __init__: a ring is usable however it was made. */
static PyObject *Ring_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    (void)args;
    (void)kwargs;
    Ring *r = (Ring *)type->tp_alloc(type, 0);
    if (r == NULL) return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->fd = -1;
    r->buf = PyMem_RawMalloc(MIN_CAPACITY);
    r->objects = PyDict_New();
    if (r->buf == NULL || r->objects == NULL) {
        Py_DECREF(r);
        return PyErr_NoMemory();
    }
    r->capacity = MIN_CAPACITY;
    r->limit = 64ull << 20;
    return (PyObject *)r;
}

static void Ring_dealloc(Ring *r) {
    PyObject_GC_UnTrack(r);
    Py_CLEAR(r->objects);
    PyMem_RawFree(r->buf);
    PyMem_RawFree(r->path);
    PyMem_RawFree(r->out.data);
    pthread_mutex_destroy(&r->lock);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static int Ring_traverse(Ring *r, visitproc visit, void *arg) {
    Py_VISIT(r->objects);
    return 0;
}

static int Ring_tp_clear(Ring *r) {
    Py_CLEAR(r->objects);
    return 0;
}

static Py_ssize_t Ring_len(Ring *r) { return LOAD(r->queued); }

static PyObject *Ring_get_pending(Ring *r, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(LOAD(r->pending)); }
static PyObject *Ring_get_mark(Ring *r, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(LOAD(r->mark)); }
static int Ring_set_mark(Ring *r, PyObject *value, void *Py_UNUSED(c)) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "mark cannot be deleted");
        return -1;
    }
    Py_ssize_t mark = PyLong_AsSsize_t(value);
    if (mark == -1 && PyErr_Occurred()) return -1;
    STORE(r->mark, mark);
    return 0;
}
static PyObject *Ring_get_size(Ring *r, void *Py_UNUSED(c)) {
    pthread_mutex_lock(&r->lock);
    uint64_t size = r->head - r->tail;
    pthread_mutex_unlock(&r->lock);
    return PyLong_FromUnsignedLongLong(size);
}
static PyObject *Ring_get_capacity(Ring *r, void *Py_UNUSED(c)) {
    pthread_mutex_lock(&r->lock);
    uint64_t capacity = r->capacity;
    pthread_mutex_unlock(&r->lock);
    return PyLong_FromUnsignedLongLong(capacity);
}

static PyMethodDef Ring_methods[] = {
    {"push", (PyCFunction)(void (*)(void))Ring_push, METH_FASTCALL,
     "push(ns, level, message, metadata) -> 0, the serial + 1 at the mark, or -1 if full"},
    {"push_point", (PyCFunction)(void (*)(void))Ring_push_point, METH_FASTCALL,
     "push_point(ns, data) -> as push()"},
    {"take", (PyCFunction)Ring_take, METH_O, "take(most) -> how many queued records the writer takes"},
    {"format", (PyCFunction)(void (*)(void))Ring_format, METH_FASTCALL,
     "format(first, notices, resolve) -> the taken records as JSON Lines, numbered from first"},
    {"commit", (PyCFunction)Ring_commit, METH_NOARGS, "commit(): the taken records are written"},
    {"remove", (PyCFunction)Ring_remove, METH_O, "remove(serial) -> whether it was taken back"},
    {"pop", (PyCFunction)(void (*)(void))Ring_pop, METH_FASTCALL,
     "pop(since, end) -> whether the newest record (serial in [since, end)) was taken back"},
    {"clear", (PyCFunction)Ring_clear, METH_NOARGS, "clear(): forget every record"},
    {"lend", (PyCFunction)(void (*)(void))Ring_lend, METH_FASTCALL,
     "lend(fd, path, size, next, wake_at, interval): the native writer may write the file"},
    {"reclaim", (PyCFunction)Ring_reclaim, METH_NOARGS,
     "reclaim() -> (size, next, writes) or None: end the loan, once a write under way is done"},
    {"unlend", (PyCFunction)Ring_unlend, METH_NOARGS, "unlend(): end the loan without waiting"},
    {"wait_written", (PyCFunction)(void (*)(void))Ring_wait_written, METH_FASTCALL,
     "wait_written(seen, timeout) -> 1 a batch written, 0 timed out, -1 not lent: wait for the native writer"},
    {"wake", (PyCFunction)Ring_wake, METH_NOARGS, "wake() -> whether the native writer writes it now"},
    {NULL, NULL, 0, NULL},
};

static PyObject *Ring_get_serial(Ring *r, void *Py_UNUSED(c)) { return PyLong_FromLongLong(r->serial_head); }
static PyObject *Ring_get_written(Ring *r, void *Py_UNUSED(c)) { return PyLong_FromLongLong(LOAD(r->written)); }

static PyGetSetDef Ring_getset[] = {
    {"serial", (getter)Ring_get_serial, NULL, "the serial number the next record gets", NULL},
    {"written", (getter)Ring_get_written, NULL, "how many batches were written (committed) so far", NULL},
    {"pending", (getter)Ring_get_pending, NULL, "records taken by the writer, not yet written", NULL},
    {"mark", (getter)Ring_get_mark, (setter)Ring_set_mark, "queued records at which push() says so", NULL},
    {"size", (getter)Ring_get_size, NULL, "bytes the queued and taken entries hold", NULL},
    {"capacity", (getter)Ring_get_capacity, NULL, "bytes allocated", NULL},
    {"lent", (getter)Ring_get_lent, NULL, "whether the native writer may write it", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Ring_as_sequence = {.sq_length = (lenfunc)Ring_len};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dreamlake._core.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The queue of one log or track, as bytes.",
    .tp_new = Ring_new,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_traverse = (traverseproc)Ring_traverse,
    .tp_clear = (inquiry)Ring_tp_clear,
    .tp_methods = Ring_methods,
    .tp_getset = Ring_getset,
    .tp_as_sequence = &Ring_as_sequence,
};


/* -- log(): the hot path of a session --------------------------------------------------- */

/* What turns a dict into the bytes the queue takes (see `_encode.snapshot_dict`). */
typedef struct {
    PyObject *dumps; /* orjson.dumps */
    PyObject *dumps_default;
    PyObject *dumps_option;
    PyObject *careful;  /* careful(metadata), for what orjson refuses */
    PyObject *checked;  /* checked(metadata, data), for data holding "null" */
    PyObject *snapshot; /* snapshot(metadata), for a mapping that is not a dict */
} Encoders;

#define VISIT_ENCODERS(e)              \
    do {                               \
        Py_VISIT((e).dumps);           \
        Py_VISIT((e).dumps_default);   \
        Py_VISIT((e).dumps_option);    \
        Py_VISIT((e).careful);         \
        Py_VISIT((e).checked);         \
        Py_VISIT((e).snapshot);        \
    } while (0)

static void clear_encoders(Encoders *e) {
    Py_CLEAR(e->dumps);
    Py_CLEAR(e->dumps_default);
    Py_CLEAR(e->dumps_option);
    Py_CLEAR(e->careful);
    Py_CLEAR(e->checked);
    Py_CLEAR(e->snapshot);
}

/* A session's `log(message, level="info", metadata=None)`: check, stamp, encode, push. The
   rare paths are Python's: a level in another spelling, a message that is not a str, metadata
   that is not a dict or that orjson refuses or writes with null, a full queue, echo. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Ring *ring;
    PyObject *channel;   /* its pressed(token, ns, rank, message, metadata) */
    PyObject *index;     /* dict: level spelling -> rank */
    PyObject *rank;      /* rank(level) for any other spelling: an int, or ValueError */
    PyObject *safe_str;  /* the text of a message that is not a str */
    Encoders enc;
    PyObject *echo;      /* echo((ns, level, message, metadata)), or None */
    PyObject *levels;    /* tuple of the level names, by rank */
    PyObject *dict;      /* __name__, __doc__, __signature__...: set by Python */
} Logger;

static PyObject *str_message, *str_level, *str_metadata, *str_pressed, *str_info;

static int wrong_call(const char *text, PyObject *name) {
    if (name) PyErr_Format(PyExc_TypeError, "Session.log() %s '%U'", text, name);
    else PyErr_Format(PyExc_TypeError, "Session.log() %s", text);
    return -1;
}

static int log_arguments(PyObject *const *args, size_t nargsf, PyObject *kwnames, PyObject **slots) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs > 3) {
        PyErr_Format(PyExc_TypeError,
                     "Session.log() takes from 1 to 3 positional arguments but %zd were given", nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) slots[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        int slot = -1; /* keyword names are interned, as ours are: the same object, mostly */
        if (name == str_metadata) slot = 2;
        else if (name == str_level) slot = 1;
        else if (name == str_message) slot = 0;
        else if (PyUnicode_Compare(name, str_message) == 0) slot = 0;
        else if (PyUnicode_Compare(name, str_level) == 0) slot = 1;
        else if (PyUnicode_Compare(name, str_metadata) == 0) slot = 2;
        if (slot < 0) {
            if (PyErr_Occurred()) return -1;
            return wrong_call("got an unexpected keyword argument", name);
        }
        if (slots[slot] != NULL) return wrong_call("got multiple values for argument", name);
        slots[slot] = args[nargs + i];
    }
    if (slots[0] == NULL) return wrong_call("missing 1 required positional argument: 'message'", NULL);
    return 0;
}

/* Whether every "null" in `data`, orjson's text of the exact dict `metadata`, is one of its
   None values: none at all, or as many as the None values at its top when every value there is
   a None, a finite float or an exact int, str or bool (each null more, in a str, or a NaN written
   as null). Otherwise `_encode.checked` looks: the careful path if a NaN may hide. */
static int only_nones_wrote_null(PyObject *metadata, PyObject *data) {
    const char *text = PyBytes_AS_STRING(data), *end = text + PyBytes_GET_SIZE(data);
    Py_ssize_t nulls = 0;
    for (const char *at = text; (at = memchr(at, 'n', (size_t)(end - at))) != NULL; at++)
        if (end - at >= 4 && memcmp(at, "null", 4) == 0) nulls++;
    if (nulls == 0) return 1;
    Py_ssize_t pos = 0, nones = 0;
    PyObject *key, *value;
    while (PyDict_Next(metadata, &pos, &key, &value)) {
        if (value == Py_None) nones++;
        else if (PyFloat_CheckExact(value)) {
            double v = PyFloat_AS_DOUBLE(value);
            if (v - v != 0.0) return 0; /* NaN or an infinity: written as null */
        } else if (!PyLong_CheckExact(value) && !PyUnicode_CheckExact(value) && !PyBool_Check(value))
            return 0;
    }
    return nulls == nones;
}

#define FLAT_MAX 1024 /* room for a dict's text: flat_text() writes less than this */

/* A JSON string of ASCII `s` at `w`, within `end`: past its end, or NULL if it does not fit. */
static char *put_ascii(char *w, char *buf, char *end, const char *s, size_t n) {
    if (n + 2 > (size_t)(end - w)) return NULL;
    if (plain_run(s, 0, n) == n) { /* the common case: nothing to escape */
        *w++ = '"';
        if (n <= 16 && end - w >= 16) { /* a short key: two words, not a call to memcpy */
            uint64_t a = 0, b = 0;
            if (n >= 8) {
                memcpy(&a, s, 8);
                memcpy(&b, s + n - 8, 8);
                memcpy(w, &a, 8);
                memcpy(w + n - 8, &b, 8);
            } else {
                for (size_t i = 0; i < n; i++) w[i] = s[i];
            }
        } else {
            memcpy(w, s, n);
        }
        w[n] = '"';
        return w + n + 1;
    }
    Out o = {buf, (size_t)(w - buf), (size_t)(end - buf), 0, 1};
    put_json_string(&o, s, n);
    return o.failed ? NULL : buf + o.len;
}

/* orjson's text of `dict` in `buf` (OPT_SERIALIZE_NUMPY and the rest change none of it), when
   its keys are exact ASCII str and its values exact ASCII str, exact int within 64 bits, finite
   float, bool or None: its length. Otherwise, or past FLAT_MAX bytes, -1, and orjson decides.
   Calls no Python code, so no other thread changes the dict meanwhile. The bytes are orjson's:
   tests/test_flat.py. */
static Py_ssize_t flat_text(PyObject *dict, char *buf) {
    char *w = buf, *end = buf + FLAT_MAX - 1; /* room for the closing brace */
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    *w++ = '{';
    for (int first = 1; PyDict_Next(dict, &pos, &key, &value); first = 0) {
        if (!PyUnicode_CheckExact(key) || !PyUnicode_IS_COMPACT_ASCII(key)) return -1;
        if (!first) *w++ = ','; /* the room kept for a number below has room for this */
        w = put_ascii(w, buf, end, PyUnicode_DATA(key), (size_t)PyUnicode_GET_LENGTH(key));
        if (w == NULL || end - w < SHORTEST_MAX + 2) return -1; /* ':', a number or literal, ',' */
        *w++ = ':';
        if (PyFloat_CheckExact(value)) {
            double v = PyFloat_AS_DOUBLE(value);
            if (v - v != 0.0) return -1; /* NaN or an infinity: the careful path writes it */
            w += shortest_double(v, w);
        } else if (PyUnicode_CheckExact(value) && PyUnicode_IS_COMPACT_ASCII(value)) {
            w = put_ascii(w, buf, end, PyUnicode_DATA(value), (size_t)PyUnicode_GET_LENGTH(value));
            if (w == NULL || end - w < 1) return -1;
        } else if (value == Py_True) {
            memcpy(w, "true", 4), w += 4;
        } else if (value == Py_False) {
            memcpy(w, "false", 5), w += 5;
        } else if (value == Py_None) {
            memcpy(w, "null", 4), w += 4;
        } else if (PyLong_CheckExact(value)) {
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow) return -1; /* orjson writes up to 2**64 - 1, or refuses */
            w += decimal_int(v, w); /* within the room kept above */
        } else {
            return -1;
        }
    }
    *w++ = '}';
    return w - buf;
}

/* flat(dict) -> bytes or None: flat_text()'s text of `dict`, None where orjson decides. For tests. */
static PyObject *module_flat(PyObject *Py_UNUSED(module), PyObject *dict) {
    if (!PyDict_CheckExact(dict)) {
        PyErr_SetString(PyExc_TypeError, "flat() takes a dict");
        return NULL;
    }
    char text[FLAT_MAX];
    Py_ssize_t len = flat_text(dict, text);
    if (len < 0) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(text, len);
}

/* The metadata as what the queue takes: None, JSON bytes, or an object the writer resolves;
   orjson's, a flat dict's already tried. */
static PyObject *orjson_encoded(Encoders *e, PyObject *metadata) {
    if (metadata == Py_None) return Py_NewRef(Py_None);
    if (!PyDict_CheckExact(metadata)) return PyObject_CallOneArg(e->snapshot, metadata);
    PyObject *call[3] = {metadata, e->dumps_default, e->dumps_option};
    PyObject *data = PyObject_Vectorcall(e->dumps, call, 3, NULL);
    if (data == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return NULL;
        PyErr_Clear();  /* a value orjson cannot write as it is */
        return PyObject_CallOneArg(e->careful, metadata);
    }
    if (PyBytes_Check(data) && !only_nones_wrote_null(metadata, data)) { /* a NaN may be a null */
        PyObject *args[2] = {metadata, data};
        PyObject *checked = PyObject_Vectorcall(e->checked, args, 2, NULL);
        Py_DECREF(data);
        return checked;
    }
    return data;
}

/* orjson_encoded(), a flat dict's text written here first. */
static PyObject *encoded(Encoders *e, PyObject *metadata) {
    if (PyDict_CheckExact(metadata)) {
        char flat[FLAT_MAX];
        Py_ssize_t len = flat_text(metadata, flat);
        if (len >= 0) return PyBytes_FromStringAndSize(flat, len);
    }
    return orjson_encoded(e, metadata);
}

static PyObject *Logger_call(Logger *lg, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    PyObject *slots[3] = {NULL, NULL, NULL};
    if (log_arguments(args, nargsf, kwnames, slots) < 0) return NULL;
    PyObject *message = slots[0], *level = slots[1] ? slots[1] : str_info, *metadata = slots[2] ? slots[2] : Py_None;
    long rank = -1;
    for (int i = 0; i < N_LEVELS; i++) /* a level's own name, interned as ours: no lookup */
        if (level == PyTuple_GET_ITEM(lg->levels, i)) rank = i;
    if (rank < 0) {
        PyObject *found = PyDict_GetItemWithError(lg->index, level);
        if (found != NULL) {
            rank = PyLong_AsLong(found);
        } else {
            /* Not found, or unhashable (TypeError): rank() decides; anything else (Ctrl-C in a
               __hash__) propagates. */
            if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_TypeError)) return NULL;
            PyErr_Clear();
            PyObject *r = PyObject_CallOneArg(lg->rank, level);
            if (r == NULL) return NULL;
            rank = PyLong_AsLong(r);
            Py_DECREF(r);
        }
        if (rank == -1 && PyErr_Occurred()) return NULL;
    }
    if (rank < 0 || rank >= N_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "level rank out of range");
        return NULL;
    }
    PyObject *text;
    if (PyUnicode_CheckExact(message)) text = Py_NewRef(message);
    else if ((text = PyObject_CallOneArg(lg->safe_str, message)) == NULL) return NULL;
    /* A flat dict is written here, into `flat`, without orjson or a bytes object. */
    char flat[FLAT_MAX];
    Py_ssize_t flat_len = PyDict_CheckExact(metadata) ? flat_text(metadata, flat) : -1;
    PyObject *data = NULL;
    if (flat_len < 0 && (data = orjson_encoded(&lg->enc, metadata)) == NULL) {
        Py_DECREF(text);
        return NULL;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    PyObject *result = NULL;
    /* The mark is 0 unless the session is simply open: Python decides, before anything is
       queued (a refused entry leaves nothing behind). */
    int closed = LOAD(lg->ring->mark) == 0;
    PyObject *token = closed   ? PyLong_FromLong(0)
                      : data ? push_record(lg->ring, ns, (int)rank, text, data)
                             : push_text(lg->ring, ns, (int)rank, text, META_TEXT, flat, flat_len, NULL, NULL);
    if (token == NULL) goto done;
    if ((closed || PyLong_AsLongLong(token) != 0 || lg->echo != Py_None) && data == NULL &&
        (data = PyBytes_FromStringAndSize(flat, flat_len)) == NULL)
        goto done; /* Python's paths below take the text as bytes */
    if (closed || PyLong_AsLongLong(token) != 0) { /* not open, at the mark, or no room */
        PyObject *ns_obj = PyLong_FromLongLong(ns), *rank_obj = PyLong_FromLong(rank);
        if (ns_obj && rank_obj) {
            PyObject *call[6] = {lg->channel, token, ns_obj, rank_obj, text, data};
            PyObject *r = PyObject_VectorcallMethod(str_pressed, call, 6 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_XDECREF(r);
            if (r == NULL) {
                Py_XDECREF(ns_obj);
                Py_XDECREF(rank_obj);
                goto done;
            }
        }
        Py_XDECREF(ns_obj);
        Py_XDECREF(rank_obj);
        if (PyErr_Occurred()) goto done;
    }
    if (lg->echo != Py_None) {
        PyObject *entry = Py_BuildValue("(LOOO)", (long long)ns, PyTuple_GET_ITEM(lg->levels, rank), text, data);
        if (entry == NULL) goto done;
        PyObject *r = PyObject_CallOneArg(lg->echo, entry);
        Py_DECREF(entry);
        if (r == NULL) goto done;
        Py_DECREF(r);
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(token);
    Py_DECREF(text);
    Py_XDECREF(data);
    return result;
}

static PyObject *Logger_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"ring", "channel", "index", "rank", "safe_str", "dumps", "default", "option",
                            "careful", "checked", "snapshot", "echo", "levels", NULL};
    PyObject *o[13];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!OOOOOOOOOO!", names, &RingType, &o[0], &o[1],
                                     &PyDict_Type, &o[2], &o[3], &o[4], &o[5], &o[6], &o[7], &o[8], &o[9],
                                     &o[10], &o[11], &PyTuple_Type, &o[12]))
        return NULL;
    if (PyTuple_GET_SIZE(o[12]) != N_LEVELS) {
        PyErr_SetString(PyExc_ValueError, "levels must hold the five level names");
        return NULL;
    }
    Logger *lg = (Logger *)type->tp_alloc(type, 0);
    if (lg == NULL) return NULL;
    lg->vectorcall = (vectorcallfunc)Logger_call;
    PyObject **fields[13] = {(PyObject **)&lg->ring, &lg->channel,       &lg->index,
                             &lg->rank,               &lg->safe_str,      &lg->enc.dumps,
                             &lg->enc.dumps_default,  &lg->enc.dumps_option, &lg->enc.careful,
                             &lg->enc.checked,        &lg->enc.snapshot,  &lg->echo,
                             &lg->levels};
    for (int i = 0; i < 13; i++) *fields[i] = Py_NewRef(o[i]);
    return (PyObject *)lg;
}

static int Logger_traverse(Logger *lg, visitproc visit, void *arg) {
    Py_VISIT(lg->ring);
    Py_VISIT(lg->channel);
    Py_VISIT(lg->index);
    Py_VISIT(lg->rank);
    Py_VISIT(lg->safe_str);
    VISIT_ENCODERS(lg->enc);
    Py_VISIT(lg->echo);
    Py_VISIT(lg->levels);
    Py_VISIT(lg->dict);
    return 0;
}

static int Logger_clear(Logger *lg) {
    Py_CLEAR(lg->ring);
    Py_CLEAR(lg->channel);
    Py_CLEAR(lg->index);
    Py_CLEAR(lg->rank);
    Py_CLEAR(lg->safe_str);
    clear_encoders(&lg->enc);
    Py_CLEAR(lg->echo);
    Py_CLEAR(lg->levels);
    Py_CLEAR(lg->dict);
    return 0;
}

static void Logger_dealloc(Logger *lg) {
    PyObject_GC_UnTrack(lg);
    Logger_clear(lg);
    Py_TYPE(lg)->tp_free((PyObject *)lg);
}

static PyTypeObject LoggerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dreamlake._core.Logger",
    .tp_basicsize = sizeof(Logger),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Logger, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = Logger_new,
    .tp_dealloc = (destructor)Logger_dealloc,
    .tp_traverse = (traverseproc)Logger_traverse,
    .tp_clear = (inquiry)Logger_clear,
    .tp_dictoffset = offsetof(Logger, dict),
};


/* -- append(): the hot path of a track --------------------------------------------------- */

/* A track's `append(value=NO_VALUE, /, **fields)`: builds the fields, encodes them, and, when
   the track's lock is free and the queue is not near its mark, takes the next index and
   pushes in one step (nothing can come between the two: the GIL is held throughout). Any
   other case goes to Python's `slow(ns, data)` with the encoded fields, which decides under
   the lock (wait for room, drop, refuse). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Ring *ring;
    PyObject *counter; /* list [the index the next point gets] */
    PyObject *shift;   /* list [how far the file's numbering moved from ours] */
    PyObject *acquire; /* the track's lock: acquire(False) */
    PyObject *release;
    PyObject *slow;    /* slow(ns, data) -> {"index": ...} */
    Encoders enc;
    PyObject *dict;    /* __name__, __doc__, __signature__...: set by Python */
} Appender;

static PyObject *str_value, *str_index;

static PyObject *index_result(long long index) {
    PyObject *number = PyLong_FromLongLong(index);
    if (number == NULL) return NULL;
    PyObject *result = PyDict_New();
    if (result == NULL || PyDict_SetItem(result, str_index, number) < 0) Py_CLEAR(result);
    Py_DECREF(number);
    return result;
}

static PyObject *Appender_call(Appender *ap, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError,
                     "Track.append() takes from 0 to 1 positional arguments but %zd were given", nargs);
        return NULL;
    }
    if (nargs == 0 && nkw == 0) {
        PyErr_SetString(PyExc_ValueError, "Track.append() needs at least one field, such as "
                                          "append(0.5, step=1) or append(value=0.5)");
        return NULL;
    }
    PyObject *fields = PyDict_New();
    if (fields == NULL) return NULL;
    if (nargs == 1 && PyDict_SetItem(fields, str_value, args[0]) < 0) goto fail;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        if (nargs == 1 && PyUnicode_Compare(name, str_value) == 0) {
            PyErr_SetString(PyExc_TypeError, "Track.append() got value twice: as its first argument and "
                                             "as value=; give it once");
            goto fail;
        }
        if (PyDict_SetItem(fields, name, args[nargs + i]) < 0) goto fail;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    PyObject *data = encoded(&ap->enc, fields);
    Py_DECREF(fields);
    if (data == NULL) return NULL;
    Ring *r = ap->ring;
    PyObject *result = NULL;
    if (LOAD(r->queued) + 1 < LOAD(r->mark)) { /* open, and far from the mark: the fast path, if the lock is free */
        PyObject *got = PyObject_CallOneArg(ap->acquire, Py_False);
        if (got == NULL) goto done;
        int free = PyObject_IsTrue(got);
        Py_DECREF(got);
        if (free < 0) goto done;
        if (free) {
            PyObject *next = PyList_GET_ITEM(ap->counter, 0);
            long long index = PyLong_AsLongLong(next);
            PyObject *token = NULL, *after = NULL;
            if (!(index == -1 && PyErr_Occurred())) after = PyLong_FromLongLong(index + 1);
            if (after != NULL) token = push_record(r, ns, 0, NULL, data);
            long long pushed = token ? PyLong_AsLongLong(token) : -2;
            Py_XDECREF(token);
            if (pushed >= 0) {
                PyList_SetItem(ap->counter, 0, after); /* steals `after` */
                after = NULL;
                long long shift = PyLong_AsLongLong(PyList_GET_ITEM(ap->shift, 0));
                if (!PyErr_Occurred()) result = index_result(index + shift);
            }
            Py_XDECREF(after);
            PyObject *released = PyObject_CallNoArgs(ap->release);
            if (released == NULL) Py_CLEAR(result);
            Py_XDECREF(released);
            if (result != NULL || PyErr_Occurred() || pushed != -1) goto done;
            /* no room for its bytes: Python waits for room, or drops */
        }
    }
    {
        PyObject *ns_obj = PyLong_FromLongLong(ns);
        if (ns_obj != NULL) {
            PyObject *call[2] = {ns_obj, data};
            result = PyObject_Vectorcall(ap->slow, call, 2, NULL);
            Py_DECREF(ns_obj);
        }
    }
done:
    Py_DECREF(data);
    return result;
fail:
    Py_DECREF(fields);
    return NULL;
}

static PyObject *Appender_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"ring", "counter", "shift", "lock", "slow", "dumps", "default", "option",
                            "careful", "checked", "snapshot", NULL};
    PyObject *ring, *counter, *shift, *lock, *slow, *e[6];
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!OOOOOOOO", names, &RingType, &ring, &PyList_Type,
                                     &counter, &PyList_Type, &shift, &lock, &slow, &e[0], &e[1], &e[2], &e[3],
                                     &e[4], &e[5]))
        return NULL;
    if (PyList_GET_SIZE(counter) != 1 || PyList_GET_SIZE(shift) != 1) {
        PyErr_SetString(PyExc_ValueError, "counter and shift must be lists of one int");
        return NULL;
    }
    Appender *ap = (Appender *)type->tp_alloc(type, 0);
    if (ap == NULL) return NULL;
    ap->vectorcall = (vectorcallfunc)Appender_call;
    ap->ring = (Ring *)Py_NewRef(ring);
    ap->counter = Py_NewRef(counter);
    ap->shift = Py_NewRef(shift);
    ap->slow = Py_NewRef(slow);
    ap->acquire = PyObject_GetAttrString(lock, "acquire");
    ap->release = PyObject_GetAttrString(lock, "release");
    PyObject **fields[6] = {&ap->enc.dumps, &ap->enc.dumps_default, &ap->enc.dumps_option,
                            &ap->enc.careful, &ap->enc.checked, &ap->enc.snapshot};
    for (int i = 0; i < 6; i++) *fields[i] = Py_NewRef(e[i]);
    if (ap->acquire == NULL || ap->release == NULL) {
        Py_DECREF(ap);
        return NULL;
    }
    return (PyObject *)ap;
}

static int Appender_traverse(Appender *ap, visitproc visit, void *arg) {
    Py_VISIT(ap->ring);
    Py_VISIT(ap->counter);
    Py_VISIT(ap->shift);
    Py_VISIT(ap->acquire);
    Py_VISIT(ap->release);
    Py_VISIT(ap->slow);
    VISIT_ENCODERS(ap->enc);
    Py_VISIT(ap->dict);
    return 0;
}

static int Appender_clear(Appender *ap) {
    Py_CLEAR(ap->ring);
    Py_CLEAR(ap->counter);
    Py_CLEAR(ap->shift);
    Py_CLEAR(ap->acquire);
    Py_CLEAR(ap->release);
    Py_CLEAR(ap->slow);
    clear_encoders(&ap->enc);
    Py_CLEAR(ap->dict);
    return 0;
}

static void Appender_dealloc(Appender *ap) {
    PyObject_GC_UnTrack(ap);
    Appender_clear(ap);
    Py_TYPE(ap)->tp_free((PyObject *)ap);
}

static PyTypeObject AppenderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dreamlake._core.Appender",
    .tp_basicsize = sizeof(Appender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Appender, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_new = Appender_new,
    .tp_dealloc = (destructor)Appender_dealloc,
    .tp_traverse = (traverseproc)Appender_traverse,
    .tp_clear = (inquiry)Appender_clear,
    .tp_dictoffset = offsetof(Appender, dict),
};

static PyMethodDef module_methods[] = {
    {"start", (PyCFunction)native_start, METH_NOARGS, "start() -> whether the native writer runs"},
    {"stop", (PyCFunction)native_stop, METH_O, "stop(timeout) -> whether the native writer has left"},
    {"faults_left", (PyCFunction)native_faults_left, METH_NOARGS, "faults_left() -> faults still to come"},
    {"running", (PyCFunction)native_running, METH_NOARGS, "running() -> whether the native writer runs"},
    {"fail_writes", (PyCFunction)(void (*)(void))native_fail_writes, METH_FASTCALL,
     "fail_writes(errno, count): the native writer's next writes fail (tests only)"},
    {"flat", (PyCFunction)module_flat, METH_O, "flat(dict) -> the text log() writes natively, or None (tests)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dreamlake._core", "The queue of records as bytes, the lines made of it, and their writer.",
    -1, module_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__core(void) {
    static int once;
    if (!once) { /* one writer per process, whatever imports the module again */
        native_init();
        if (pthread_atfork(NULL, NULL, native_after_fork_child) != 0) {
            PyErr_SetString(PyExc_OSError, "dreamlake._core: pthread_atfork failed");
            return NULL;
        }
        once = 1;
    }
    if (PyType_Ready(&RingType) < 0 || PyType_Ready(&LoggerType) < 0 || PyType_Ready(&AppenderType) < 0)
        return NULL;
    str_value = PyUnicode_InternFromString("value");
    str_index = PyUnicode_InternFromString("index");
    if (!str_value || !str_index) return NULL;
    str_message = PyUnicode_InternFromString("message");
    str_level = PyUnicode_InternFromString("level");
    str_metadata = PyUnicode_InternFromString("metadata");
    str_pressed = PyUnicode_InternFromString("pressed");
    str_info = PyUnicode_InternFromString("info");
    if (!str_message || !str_level || !str_metadata || !str_pressed || !str_info) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&RingType);
    if (PyModule_AddObject(m, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(&RingType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&LoggerType);
    if (PyModule_AddObject(m, "Logger", (PyObject *)&LoggerType) < 0) {
        Py_DECREF(&LoggerType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&AppenderType);
    if (PyModule_AddObject(m, "Appender", (PyObject *)&AppenderType) < 0) {
        Py_DECREF(&AppenderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
