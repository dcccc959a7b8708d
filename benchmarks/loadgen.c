/*
 * loadgen: a closed-loop load generator for HelloService.getData over
 * Thrift's strict binary, compact or JSON protocol, framed or unframed
 * (buffered), or binary or compact in THeader frames.
 *
 * It opens C connections to 127.0.0.1:PORT and keeps D calls in flight on
 * each: every reply is validated and immediately replaced by a new call.
 * Calls completing during the measured window (after a warm-up) are counted
 * and their latencies (issue to whole reply) recorded.  One JSON object is
 * printed on stdout; diagnostics go to stderr.
 *
 *   cc -O2 -o loadgen loadgen.c
 *   ./loadgen --port 9090 --conns 4 --depth 16 --payload 13 --framed \
 *             --protocol compact --warmup 1 --duration 3
 *   ./loadgen --port 9090 --conns 4 --depth 16 --payload 13 --header
 *
 * The request input is the string "client access" repeated and cut to the
 * payload size (13 bytes is exactly the seed's "client access"); the reply
 * must carry that input + " from server 1024".
 *
 * Each request is a head that holds the seqid, written per call, and a body
 * (the argument struct) built once.  Wire facts used:
 *   binary  message = i32 version|type (0x8001000T), i32 name length, name,
 *                     i32 seqid, struct; struct = { i8 type, i16 id, value }*,
 *                     i8 STOP (0)
 *   compact message = 0x82, type << 5 | 1, varint seqid, varint name length,
 *                     name, struct; a field header is delta << 4 | type, with
 *                     a zigzag varint id after it when the delta is 0;
 *                     integers are zigzag varints, doubles 8 bytes
 *   JSON    message = [1,"name",type,seqid,{"id":{"typename":value},...}]
 *                     as Apache's TJSONProtocol writes it (no whitespace);
 *                     unframed, its end is found by matching brackets
 *                     outside strings
 *   framed  = i32 length, message
 *   THeader = i32 length, u16 magic 0x0FFF, u16 flags, i32 seqid,
 *             u16 header length / 4, header, message; header = varint
 *             protocol id (0 binary, 2 compact), varint transform count,
 *             transform ids, info headers, zero padding to the length.
 *             Requests carry no flags, transforms or info headers, the
 *             message's seqid in both places (so the THeader part is a
 *             second piece of the head, written per call); a reply's
 *             header is skipped by its length, but it must name the
 *             protocol, no transform and the seqid of the message inside.
 *
 * With --http PATH each call is an HTTP/1.1 POST of one unframed message to
 * PATH (Content-Type application/x-thrift, or application/vnd.apache.thrift.json
 * for JSON), up to D of them pipelined on each kept-alive connection; a reply
 * is a 200 whose Content-Length body is one message.  A server that closes
 * the connection after a reply (HTTP/1.0, or "Connection: close") is
 * connected to again for the next call: give it D=1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define SUFFIX " from server 1024"
#define METHOD "getData"
#define HEAD_MAX 64 /* the longest head of any protocol, seqid included */
#define THEADER_LEN 14 /* a request's THeader part: magic to padding, 4-byte header */

enum { P_BINARY, P_COMPACT, P_JSON };
static const char *protocol_names[] = {"binary", "compact", "json"};

enum {
    E_MALFORMED,     /* bytes that are no message of the protocol */
    E_BAD_TYPE,      /* a message that is neither REPLY nor EXCEPTION */
    E_EXCEPTION,     /* an EXCEPTION message (TApplicationException) */
    E_UNKNOWN_SEQID, /* a reply whose seqid is not in flight on its connection */
    E_BAD_NAME,      /* a reply naming another method */
    E_BAD_PAYLOAD,   /* field 0 present but not input + SUFFIX */
    E_BAD_RESULT,    /* no field 0 string, or other fields in the result */
    E_FRAME_SIZE,    /* frame length disagrees with the message inside */
    E_CLOSED,        /* the server closed or reset a connection */
    E_HTTP_STATUS,   /* an HTTP answer other than 200 */
    E_HEADER,        /* a THeader frame's header: magic, protocol, transforms, seqid */
    E_COUNT
};
static const char *error_names[E_COUNT] = {
    "malformed", "bad_type", "exception", "unknown_seqid", "bad_name",
    "bad_payload", "bad_result", "frame_size", "closed", "http_status", "header",
};
static uint64_t errors[E_COUNT];
static int error_reports = 0;

static void error(int kind, const char *detail) {
    errors[kind]++;
    if (error_reports < 5) {
        error_reports++;
        fprintf(stderr, "loadgen: %s%s%s\n", error_names[kind], detail ? ": " : "",
                detail ? detail : "");
    }
}

typedef struct {
    int32_t seqid;
    int used;
    size_t request_len; /* bytes sent for this call, frame prefix included */
    double issued;
} slot_t;

/* Where an unframed JSON message's bracket matching stopped. */
typedef struct {
    size_t pos;
    int depth;
    int in_string;
} jscan_t;

typedef struct {
    int fd;
    int dead;
    int polling_out;
    unsigned char *out;
    size_t olen, ooff, ocap;
    unsigned char *in;
    size_t ilen, ioff, icap;
    size_t need; /* do not parse again before this many bytes are buffered */
    jscan_t scan;
    slot_t *slots;
    int inflight;
    int32_t next_seqid;
    uint64_t done_window;
    int closing;      /* HTTP: the server closes after the reply being handled */
    uint64_t reconnects;
} conn_t;

/* ---- settings and shared state ---- */
static int opt_port = 0, opt_conns = 1, opt_depth = 1, opt_framed = 1;
static int opt_header = 0;          /* THeader frames (opt_framed is set too) */
static int opt_protocol = P_BINARY;
static long opt_payload = 13;
static double opt_warmup = 1.0, opt_duration = 3.0, opt_connect_timeout = 5.0;
static const char *opt_host = "127.0.0.1";
static const char *opt_http = NULL; /* the path POSTed to, in HTTP mode */
static size_t reply_overhead;       /* HTTP or THeader: the head of the reply being handled */
static int32_t reply_header_seqid;  /* THeader: the seqid in the reply's THeader part */
static uint64_t reconnects_total;

static unsigned char *body;        /* the request after its head: the argument struct */
static size_t body_len;
static unsigned char *expected;    /* the reply's string value */
static size_t expected_len;
static unsigned char *json_result; /* JSON: the whole expected result struct and "]" */
static size_t json_result_len;

static int epfd;
static conn_t *conns;
static double t_start, t_window, t_end;
static int stopping = 0;

static double *lat;                /* latencies in the window, µs */
static size_t lat_n, lat_cap;
static uint64_t done_window, done_total;
static uint64_t bytes_in_window;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", n);
        exit(3);
    }
    return q;
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static uint32_t get32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static size_t put_varint(unsigned char *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) { p[n++] = (unsigned char)(v | 0x80); v >>= 7; }
    p[n++] = (unsigned char)v;
    return n;
}

/* The head of a CALL with `seqid` at p; returns its length (<= HEAD_MAX). */
static size_t put_head(unsigned char *p, int32_t seqid) {
    size_t n = 0;
    switch (opt_protocol) {
    case P_BINARY:
        put32(p, 0x80010001u);
        put32(p + 4, 7);
        memcpy(p + 8, METHOD, 7);
        put32(p + 15, (uint32_t)seqid);
        return 19;
    case P_COMPACT:
        p[n++] = 0x82;
        p[n++] = (1 << 5) | 1; /* CALL, version 1 */
        n += put_varint(p + n, (uint32_t)seqid);
        n += put_varint(p + n, 7);
        memcpy(p + n, METHOD, 7);
        return n + 7;
    default:
        return (size_t)snprintf((char *)p, HEAD_MAX, "[1,\"" METHOD "\",1,%d,", (int)seqid);
    }
}

/* The THeader part of a request (after its frame length) at p. */
static void put_theader(unsigned char *p, int32_t seqid) {
    p[0] = 0x0f; p[1] = 0xff;                 /* magic */
    p[2] = 0; p[3] = 0;                       /* flags */
    put32(p + 4, (uint32_t)seqid);
    p[8] = 0; p[9] = 1;                       /* header length / 4 */
    p[10] = opt_protocol == P_COMPACT ? 2 : 0; /* protocol id */
    p[11] = 0;                                /* no transforms */
    p[12] = 0; p[13] = 0;                     /* padding */
}

static void build_messages(void) {
    static const char pattern[] = "client access";
    size_t plen = sizeof(pattern) - 1, n = (size_t)opt_payload, sl = strlen(SUFFIX);
    unsigned char *input = xrealloc(NULL, n);
    for (size_t i = 0; i < n; i++) input[i] = pattern[i % plen];

    body = xrealloc(NULL, n + 32);
    unsigned char *p = body;
    if (opt_protocol == P_BINARY) {
        *p++ = 11; *p++ = 0; *p++ = 1;        /* field 1: STRING */
        put32(p, (uint32_t)n); p += 4;
    } else if (opt_protocol == P_COMPACT) {
        *p++ = (1 << 4) | 8;                  /* field 1 (delta 1): BINARY */
        p += put_varint(p, n);
    } else {
        static const char open[] = "{\"1\":{\"str\":\"";
        memcpy(p, open, sizeof open - 1); p += sizeof open - 1;
    }
    memcpy(p, input, n); p += n;
    if (opt_protocol == P_JSON) {
        memcpy(p, "\"}}]", 4); p += 4;
    } else {
        *p++ = 0;                             /* STOP */
    }
    body_len = (size_t)(p - body);

    expected_len = n + sl;
    expected = xrealloc(NULL, expected_len);
    memcpy(expected, input, n);
    memcpy(expected + n, SUFFIX, sl);
    if (opt_protocol == P_JSON) {
        static const char open[] = "{\"0\":{\"str\":\"";
        json_result_len = sizeof open - 1 + expected_len + 4;
        json_result = xrealloc(NULL, json_result_len);
        memcpy(json_result, open, sizeof open - 1);
        memcpy(json_result + sizeof open - 1, expected, expected_len);
        memcpy(json_result + sizeof open - 1 + expected_len, "\"}}]", 4);
    }
    free(input);
}

/* ---- parsing ---- */

#define NEED (-1)
#define BAD (-2)
static size_t need_hint; /* set when a parse returns NEED: bytes required */

/* Binary: skip one value of `type` at buf[pos]; returns the position after it. */
static long skip(const unsigned char *buf, size_t len, size_t pos, int type, int depth) {
    static const int fixed[17] = {0, 0, 1, 1, 8, 0, 2, 0, 4, 0, 8, 0, 0, 0, 0, 0, 16};
    if (depth > 64) return BAD;
    if (type >= 0 && type <= 16 && fixed[type]) {
        if (pos + fixed[type] > len) { need_hint = pos + fixed[type]; return NEED; }
        return (long)(pos + fixed[type]);
    }
    switch (type) {
    case 11: { /* string / binary */
        if (pos + 4 > len) { need_hint = pos + 4; return NEED; }
        uint32_t n = get32(buf + pos);
        if (n > 0x7fffffffu) return BAD;
        if (pos + 4 + n > len) { need_hint = pos + 4 + n; return NEED; }
        return (long)(pos + 4 + n);
    }
    case 12: /* struct */
        for (;;) {
            if (pos + 1 > len) { need_hint = pos + 1; return NEED; }
            int ft = buf[pos];
            if (ft == 0) return (long)(pos + 1);
            if (pos + 3 > len) { need_hint = pos + 3; return NEED; }
            long r = skip(buf, len, pos + 3, ft, depth + 1);
            if (r < 0) return r;
            pos = (size_t)r;
        }
    case 13: { /* map */
        if (pos + 6 > len) { need_hint = pos + 6; return NEED; }
        int kt = buf[pos], vt = buf[pos + 1];
        uint32_t n = get32(buf + pos + 2);
        if (n > 0x7fffffffu) return BAD;
        pos += 6;
        for (uint32_t i = 0; i < n; i++) {
            long r = skip(buf, len, pos, kt, depth + 1);
            if (r < 0) return r;
            r = skip(buf, len, (size_t)r, vt, depth + 1);
            if (r < 0) return r;
            pos = (size_t)r;
        }
        return (long)pos;
    }
    case 14: case 15: { /* set, list */
        if (pos + 5 > len) { need_hint = pos + 5; return NEED; }
        int et = buf[pos];
        uint32_t n = get32(buf + pos + 1);
        if (n > 0x7fffffffu) return BAD;
        pos += 5;
        for (uint32_t i = 0; i < n; i++) {
            long r = skip(buf, len, pos, et, depth + 1);
            if (r < 0) return r;
            pos = (size_t)r;
        }
        return (long)pos;
    }
    default:
        return BAD;
    }
}

/* Compact: read a varint of at most `most` bytes at buf[pos] into *v. */
static long varint(const unsigned char *buf, size_t len, size_t pos, uint64_t *v, int most) {
    uint64_t x = 0;
    for (int i = 0; i < most; i++) {
        if (pos + i >= len) { need_hint = pos + i + 1; return NEED; }
        x |= (uint64_t)(buf[pos + i] & 0x7f) << (7 * i);
        if (!(buf[pos + i] & 0x80)) { *v = x; return (long)(pos + i + 1); }
    }
    return BAD;
}

/* Compact: skip one value of compact `type` at buf[pos]; in a container a
 * bool takes a byte, in a field its value is in the field header. */
static long cskip(const unsigned char *buf, size_t len, size_t pos, int type, int element,
                  int depth) {
    uint64_t n;
    long r;
    if (depth > 64) return BAD;
    switch (type) {
    case 1: case 2: /* bool */
        if (!element) return (long)pos;
        /* fall through */
    case 3: /* byte */
        if (pos + 1 > len) { need_hint = pos + 1; return NEED; }
        return (long)(pos + 1);
    case 4: case 5: case 6: /* i16, i32, i64 */
        return varint(buf, len, pos, &n, 10);
    case 7: /* double */
        if (pos + 8 > len) { need_hint = pos + 8; return NEED; }
        return (long)(pos + 8);
    case 13: /* uuid */
        if (pos + 16 > len) { need_hint = pos + 16; return NEED; }
        return (long)(pos + 16);
    case 8: /* binary */
        if ((r = varint(buf, len, pos, &n, 5)) < 0) return r;
        if (n > 0x7fffffffu) return BAD;
        if ((size_t)r + n > len) { need_hint = (size_t)r + n; return NEED; }
        return (long)((size_t)r + n);
    case 9: case 10: { /* list, set */
        if (pos + 1 > len) { need_hint = pos + 1; return NEED; }
        int et = buf[pos] & 0x0f;
        n = buf[pos] >> 4;
        r = (long)(pos + 1);
        if (n == 15 && (r = varint(buf, len, pos + 1, &n, 5)) < 0) return r;
        if (n > 0x7fffffffu) return BAD;
        for (uint64_t i = 0; i < n; i++)
            if ((r = cskip(buf, len, (size_t)r, et, 1, depth + 1)) < 0) return r;
        return r;
    }
    case 11: { /* map */
        if ((r = varint(buf, len, pos, &n, 5)) < 0) return r;
        if (n == 0) return r;
        if (n > 0x7fffffffu) return BAD;
        if ((size_t)r + 1 > len) { need_hint = (size_t)r + 1; return NEED; }
        int kt = buf[r] >> 4, vt = buf[r] & 0x0f;
        r++;
        for (uint64_t i = 0; i < n; i++) {
            if ((r = cskip(buf, len, (size_t)r, kt, 1, depth + 1)) < 0) return r;
            if ((r = cskip(buf, len, (size_t)r, vt, 1, depth + 1)) < 0) return r;
        }
        return r;
    }
    case 12: /* struct */
        for (;;) {
            if (pos + 1 > len) { need_hint = pos + 1; return NEED; }
            int h = buf[pos++];
            if (h == 0) return (long)pos;
            if (!(h >> 4)) { /* a long-form header: the field id follows */
                if ((r = varint(buf, len, pos, &n, 3)) < 0) return r;
                pos = (size_t)r;
            }
            if ((r = cskip(buf, len, pos, h & 0x0f, 0, depth + 1)) < 0) return r;
            pos = (size_t)r;
        }
    default:
        return BAD;
    }
}

/* JSON: match brackets from s->pos on; the message's length once whole. */
static long json_scan(const unsigned char *buf, size_t len, jscan_t *s) {
    size_t pos = s->pos;
    if (pos == 0) {
        if (len < 1) { need_hint = 1; return NEED; }
        if (buf[0] != '[') return BAD;
    }
    while (pos < len) {
        if (s->in_string) {
            /* Jump to the next quote; it ends the string unless escaped. */
            const unsigned char *q = memchr(buf + pos, '"', len - pos);
            if (!q) { pos = len; break; }
            size_t at = (size_t)(q - buf), back = 0;
            while (at - back > 0 && buf[at - back - 1] == '\\') back++;
            pos = at + 1;
            if (!(back & 1)) s->in_string = 0;
            continue;
        }
        unsigned char ch = buf[pos++];
        if (ch == '"') s->in_string = 1;
        else if (ch == '[' || ch == '{') {
            if (++s->depth > 128) return BAD;
        } else if (ch == ']' || ch == '}') {
            if (--s->depth == 0) { s->pos = 0; return (long)pos; }
            if (s->depth < 0) return BAD;
        }
    }
    /* A quote's escaping backslashes are counted back from the quote over
     * the whole message, so they may come in an earlier read. */
    s->pos = pos;
    need_hint = len + 1;
    return NEED;
}

/* Length of the message at buf[0..len), or NEED / BAD. */
static long message_length(const unsigned char *buf, size_t len, jscan_t *scan) {
    uint64_t v;
    long r;
    if (opt_protocol == P_JSON) return json_scan(buf, len, scan);
    if (opt_protocol == P_COMPACT) {
        if (len < 2) { need_hint = 2; return NEED; }
        if (buf[0] != 0x82 || (buf[1] & 0x1f) != 1) return BAD;
        if ((r = varint(buf, len, 2, &v, 5)) < 0) return r;       /* seqid */
        if ((r = varint(buf, len, (size_t)r, &v, 5)) < 0) return r; /* name length */
        if (v > 0x7fffffffu) return BAD;
        if ((size_t)r + v > len) { need_hint = (size_t)r + v; return NEED; }
        return cskip(buf, len, (size_t)r + v, 12, 0, 0);
    }
    if (len < 8) { need_hint = 8; return NEED; }
    uint32_t version = get32(buf);
    if ((version & 0xffff0000u) != 0x80010000u) return BAD;
    uint32_t nlen = get32(buf + 4);
    if (nlen > 0x7fffffffu) return BAD;
    size_t pos = 8 + (size_t)nlen + 4;
    if (pos > len) { need_hint = pos; return NEED; }
    return skip(buf, len, pos, 12, 0);
}

/* What a whole message's head says; body: where its struct starts. */
typedef struct {
    int type;
    int32_t seqid;
    int name_ok;
    size_t body;
} head_t;

static int json_int(const unsigned char *m, size_t len, size_t *pos, long *out) {
    char *end;
    char tmp[24];
    size_t n = len - *pos < sizeof tmp - 1 ? len - *pos : sizeof tmp - 1;
    memcpy(tmp, m + *pos, n);
    tmp[n] = 0;
    errno = 0;
    *out = strtol(tmp, &end, 10);
    if (end == tmp || errno || (size_t)(end - tmp) >= n || *end != ',') return -1;
    *pos += (size_t)(end - tmp) + 1;
    return 0;
}

/* Read the head of the whole message m[0..len); 0, or -1 if malformed. */
static int parse_head(const unsigned char *m, size_t len, head_t *h) {
    if (opt_protocol == P_BINARY) {
        uint32_t nlen = get32(m + 4);
        h->type = get32(m) & 0xff;
        h->name_ok = nlen == 7 && memcmp(m + 8, METHOD, 7) == 0;
        h->seqid = (int32_t)get32(m + 8 + nlen);
        h->body = 8 + nlen + 4;
        return 0;
    }
    if (opt_protocol == P_COMPACT) {
        uint64_t seqid = 0, nlen = 0;
        long r = varint(m, len, 2, &seqid, 5);
        r = varint(m, len, (size_t)r, &nlen, 5);
        h->type = m[1] >> 5;
        h->seqid = (int32_t)(uint32_t)seqid;
        h->name_ok = nlen == 7 && memcmp(m + r, METHOD, 7) == 0;
        h->body = (size_t)r + nlen;
        return 0;
    }
    /* [1,"name",type,seqid, */
    static const char start[] = "[1,\"";
    size_t pos = sizeof start - 1;
    long type, seqid;
    if (len < pos || memcmp(m, start, pos) != 0) return -1;
    const unsigned char *q = memchr(m + pos, '"', len - pos);
    if (!q || (size_t)(q - m) + 2 > len || q[1] != ',') return -1;
    h->name_ok = q - (m + pos) == 7 && memcmp(m + pos, METHOD, 7) == 0;
    pos = (size_t)(q - m) + 2;
    if (json_int(m, len, &pos, &type) || json_int(m, len, &pos, &seqid)) return -1;
    h->type = (int)type;
    h->seqid = (int32_t)seqid;
    h->body = pos;
    return 0;
}

/* Check a REPLY's result struct at m[pos..len): 0 if it is input + SUFFIX
 * in field 0 and nothing else, else the error kind (already counted). */
static int check_result(const unsigned char *m, size_t len, size_t pos) {
    int found = 0, last = 0;
    if (opt_protocol == P_JSON) {
        static const char open[] = "{\"0\":{\"str\":\"";
        if (len - pos == json_result_len && memcmp(m + pos, json_result, len - pos) == 0)
            return 0;
        int kind = len - pos >= sizeof open - 1 && memcmp(m + pos, open, sizeof open - 1) == 0
                       ? E_BAD_PAYLOAD : E_BAD_RESULT;
        error(kind, kind == E_BAD_RESULT ? "not {\"0\":{\"str\":...}}" : NULL);
        return kind;
    }
    for (;;) { /* the whole message is here, so no skip can need more */
        int ft, fid;
        size_t value;
        if (opt_protocol == P_BINARY) {
            ft = m[pos];
            if (ft == 0) break;
            fid = (int16_t)((m[pos + 1] << 8) | m[pos + 2]);
            value = pos + 3;
        } else {
            int h = m[pos];
            if (h == 0) break;
            ft = h & 0x0f;
            value = pos + 1;
            if (h >> 4) {
                fid = last + (h >> 4);
            } else {
                uint64_t z = 0;
                value = (size_t)varint(m, len, value, &z, 3);
                fid = (int)(z >> 1) ^ -(int)(z & 1);
            }
            last = fid;
        }
        if (fid == 0 && ft == (opt_protocol == P_BINARY ? 11 : 8) && !found) {
            uint64_t n = 0;
            size_t at;
            if (opt_protocol == P_BINARY) { n = get32(m + value); at = value + 4; }
            else at = (size_t)varint(m, len, value, &n, 5);
            if (n != expected_len || memcmp(m + at, expected, n) != 0) {
                error(E_BAD_PAYLOAD, NULL);
                return E_BAD_PAYLOAD;
            }
            found = 1;
        } else {
            error(E_BAD_RESULT, "unexpected field in the result struct");
            return E_BAD_RESULT;
        }
        pos = opt_protocol == P_BINARY ? (size_t)skip(m, len, value, ft, 1)
                                       : (size_t)cskip(m, len, value, ft, 0, 1);
    }
    if (!found) {
        error(E_BAD_RESULT, "no result field");
        return E_BAD_RESULT;
    }
    return 0;
}

/* A TApplicationException's message (field 1), cut to fit d[dn]. */
static void exception_text(const unsigned char *m, size_t len, size_t pos, char *d, size_t dn) {
    size_t n = 0, at = 0;
    d[0] = 0;
    if (opt_protocol == P_BINARY && pos + 7 <= len && m[pos] == 11 && m[pos + 2] == 1) {
        n = get32(m + pos + 3);
        at = pos + 7;
    } else if (opt_protocol == P_COMPACT && pos + 2 <= len && m[pos] == 0x18) {
        uint64_t v;
        long r = varint(m, len, pos + 1, &v, 5);
        if (r > 0) { n = v; at = (size_t)r; }
    } else if (opt_protocol == P_JSON) {
        static const char open[] = "{\"1\":{\"str\":\"";
        if (len - pos > sizeof open && memcmp(m + pos, open, sizeof open - 1) == 0) {
            at = pos + sizeof open - 1;
            const unsigned char *q = memchr(m + at, '"', len - at);
            n = q ? (size_t)(q - (m + at)) : 0;
        }
    }
    if (at + n > len) n = len - at;
    if (n > dn - 1) n = dn - 1;
    memcpy(d, m + at, n);
    d[n] = 0;
}

static void send_call(conn_t *c, double t);

/* Check one whole message of `len` bytes and retire its call. */
static void handle_reply(conn_t *c, const unsigned char *m, size_t len, double t) {
    head_t h;
    if (parse_head(m, len, &h) != 0) {
        error(E_MALFORMED, "message head");
        return;
    }
    slot_t *slot = NULL;
    for (int i = 0; i < opt_depth; i++)
        if (c->slots[i].used && c->slots[i].seqid == h.seqid) { slot = &c->slots[i]; break; }
    if (!slot) {
        char d[64];
        snprintf(d, sizeof d, "seqid %d", h.seqid);
        error(E_UNKNOWN_SEQID, d);
        return; /* the call it answers, if any, stays in flight */
    }

    if (h.type == 2) {
        if (!h.name_ok) error(E_BAD_NAME, NULL);
        else if (opt_header && reply_header_seqid != h.seqid) {
            char d[80];
            snprintf(d, sizeof d, "THeader seqid %d around a message with seqid %d",
                     reply_header_seqid, h.seqid);
            error(E_HEADER, d);
        } else if (check_result(m, len, h.body) == 0) {
            /* A good reply. */
            if (t >= t_window && t < t_end) {
                done_window++;
                c->done_window++;
                bytes_in_window += slot->request_len + len + (opt_framed ? 4 : 0)
                                   + reply_overhead;
                if (lat_n == lat_cap) {
                    lat_cap = lat_cap ? 2 * lat_cap : 65536;
                    lat = xrealloc(lat, lat_cap * sizeof *lat);
                }
                lat[lat_n++] = (t - slot->issued) * 1e6;
            }
            done_total++;
        }
    } else if (h.type == 3) {
        char d[151];
        exception_text(m, len, h.body, d, sizeof d);
        error(E_EXCEPTION, d);
    } else {
        error(E_BAD_TYPE, NULL);
    }
    slot->used = 0;
    c->inflight--;
    if (!stopping) send_call(c, t);
}

static void kill_conn(conn_t *c, int kind, const char *detail) {
    if (c->dead) return;
    if (kind >= 0 && !stopping) error(kind, detail);
    c->dead = 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
}

/* Find `name` (lower case, with its colon) among the header lines of `head`;
 * returns the value's start, or NULL. */
static const char *header(const char *head, size_t len, const char *name) {
    size_t n = strlen(name);
    for (size_t i = 0; i + n < len; i++) {
        if ((i == 0 || head[i - 1] == '\n') && strncasecmp(head + i, name, n) == 0) {
            const char *v = head + i + n;
            while (*v == ' ' || *v == '\t') v++;
            return v;
        }
    }
    return NULL;
}

/* HTTP: cut and handle every whole response buffered on `c`. */
static void parse_http(conn_t *c, double t) {
    while (!c->dead) {
        unsigned char *b = c->in + c->ioff;
        size_t avail = c->ilen - c->ioff;
        if (avail < c->need || avail == 0) return;
        unsigned char *end = memmem(b, avail, "\r\n\r\n", 4);
        if (!end) { c->need = avail + 1; return; }
        size_t head_len = (size_t)(end - b) + 4;
        char *head = (char *)b;
        int status = 0, minor = 1;
        if (sscanf(head, "HTTP/1.%d %d", &minor, &status) != 2) {
            kill_conn(c, E_MALFORMED, "HTTP status line");
            return;
        }
        const char *cl = header(head, head_len, "content-length:");
        if (!cl) { kill_conn(c, E_MALFORMED, "no Content-Length"); return; }
        size_t clen = (size_t)strtoull(cl, NULL, 10);
        if (avail < head_len + clen) { c->need = head_len + clen; return; }
        const char *conn = header(head, head_len, "connection:");
        c->closing = minor == 0 ? !(conn && strncasecmp(conn, "keep-alive", 10) == 0)
                                : (conn && strncasecmp(conn, "close", 5) == 0);
        if (status != 200) {
            char d[64];
            snprintf(d, sizeof d, "HTTP %d", status);
            kill_conn(c, E_HTTP_STATUS, d);
            return;
        }
        reply_overhead = head_len;
        handle_reply(c, b + head_len, clen, t);
        reply_overhead = 0;
        c->ioff += head_len + clen;
        c->need = 0;
        if (c->closing) return; /* read_conn connects again */
    }
}

/* THeader: what is wrong with the THeader part of the frame f[0..flen) for
 * a reply to this load generator's calls, or NULL and *end = its length
 * (magic to the end of the header: info headers are skipped). */
static const char *theader_check(const unsigned char *f, size_t flen, size_t *end) {
    *end = flen >= 10 ? 10 + 4 * (size_t)((f[8] << 8) | f[9]) : 0;
    if (flen < 12) return "a frame too short for a THeader header";
    if (f[0] != 0x0f || f[1] != 0xff) return "no THeader magic (0x0fff)";
    if (*end > flen) return "a THeader header longer than its frame";
    if (*end < 12) return "an empty THeader header";
    if (f[10] != (opt_protocol == P_COMPACT ? 2 : 0)) return "another THeader protocol id";
    if (f[11] != 0) return "a THeader transform";
    return NULL;
}

/* Cut and handle every whole message buffered on `c`. */
static void parse_input(conn_t *c, double t) {
    if (opt_http) { parse_http(c, t); return; }
    while (!c->dead) {
        unsigned char *b = c->in + c->ioff;
        size_t avail = c->ilen - c->ioff;
        if (avail < c->need) return;
        size_t total;
        if (opt_framed) {
            if (avail < 4) { c->need = 4; return; }
            uint32_t flen = get32(b);
            if (flen == 0 || flen > 0x7fffffffu) { kill_conn(c, E_MALFORMED, "frame length"); return; }
            if (avail < 4 + (size_t)flen) { c->need = 4 + (size_t)flen; return; }
            size_t skip_header = 0;
            const char *why = opt_header ? theader_check(b + 4, flen, &skip_header) : NULL;
            if (why) { kill_conn(c, E_HEADER, why); return; }
            const unsigned char *m = b + 4 + skip_header;
            size_t mlen = flen - skip_header;
            jscan_t scan = {0, 0, 0};
            long r = message_length(m, mlen, &scan);
            if (r == BAD) { kill_conn(c, E_MALFORMED, "framed message"); return; }
            if (r == NEED || (size_t)r != mlen) {
                /* The frame holds a different amount than its message. */
                kill_conn(c, E_FRAME_SIZE, NULL);
                return;
            }
            total = 4 + (size_t)flen;
            if (opt_header) reply_header_seqid = (int32_t)get32(b + 8);
            reply_overhead = skip_header;
            handle_reply(c, m, mlen, t);
            reply_overhead = 0;
        } else {
            long r = message_length(b, avail, &c->scan);
            if (r == NEED) { c->need = need_hint; return; }
            if (r == BAD) { kill_conn(c, E_MALFORMED, "unframed message"); return; }
            total = (size_t)r;
            handle_reply(c, b, total, t);
        }
        c->ioff += total;
        c->need = 0;
    }
}

static void update_poll(conn_t *c) {
    int want_out = c->olen > c->ooff;
    if (want_out == c->polling_out || c->dead) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->polling_out = want_out;
}

static void flush_out(conn_t *c) {
    while (!c->dead && c->olen > c->ooff) {
        ssize_t n = send(c->fd, c->out + c->ooff, c->olen - c->ooff, MSG_NOSIGNAL);
        if (n > 0) { c->ooff += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        kill_conn(c, E_CLOSED, strerror(errno));
        return;
    }
    if (c->ooff == c->olen) {
        c->ooff = c->olen = 0;
    } else if (c->ooff > c->ocap / 2) {
        memmove(c->out, c->out + c->ooff, c->olen - c->ooff);
        c->olen -= c->ooff;
        c->ooff = 0;
    }
    update_poll(c);
}

/* Queue one call on `c` (written by the next flush_out). */
static void send_call(conn_t *c, double t) {
    slot_t *slot = NULL;
    for (int i = 0; i < opt_depth; i++)
        if (!c->slots[i].used) { slot = &c->slots[i]; break; }
    if (!slot) return;
    int32_t seqid = c->next_seqid;
    c->next_seqid = seqid == INT32_MAX ? 1 : seqid + 1;
    size_t most = 4 + THEADER_LEN + HEAD_MAX + body_len +
                  (opt_http ? 256 + strlen(opt_http) : 0);
    if (c->olen + most > c->ocap) {
        c->ocap = (c->olen + most) * 2;
        c->out = xrealloc(c->out, c->ocap);
    }
    unsigned char *p = c->out + c->olen, *head = p + (opt_framed ? 4 : 0);
    unsigned char message[HEAD_MAX];
    size_t hlen = put_head(message, seqid), mlen = hlen + body_len, prefix = 0;
    if (opt_header) {
        /* The frame holds the THeader part, then the message. */
        put_theader(head, seqid);
        head += THEADER_LEN;
        mlen += THEADER_LEN;
    }
    if (opt_http) {
        prefix = (size_t)sprintf((char *)p,
                                 "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
                                 "Content-Length: %zu\r\n\r\n", opt_http, opt_host,
                                 opt_protocol == P_JSON ? "application/vnd.apache.thrift.json"
                                                        : "application/x-thrift", mlen);
        head = p + prefix;
    }
    memcpy(head, message, hlen);
    memcpy(head + hlen, body, body_len);
    if (opt_framed) put32(p, (uint32_t)mlen);
    slot->used = 1;
    slot->seqid = seqid;
    slot->issued = t;
    slot->request_len = mlen + (opt_framed ? 4 : 0) + prefix;
    c->inflight++;
    c->olen += slot->request_len;
}

static void reconnect(conn_t *c);

static void read_conn(conn_t *c) {
    size_t want = 65536;
    if (c->need > c->ilen - c->ioff && c->need - (c->ilen - c->ioff) > want)
        want = c->need - (c->ilen - c->ioff);
    if (c->ioff > 0 && c->icap - c->ilen < want) {
        memmove(c->in, c->in + c->ioff, c->ilen - c->ioff);
        c->ilen -= c->ioff;
        c->ioff = 0;
    }
    if (c->icap - c->ilen < want) {
        c->icap = c->ilen + want;
        c->in = xrealloc(c->in, c->icap);
    }
    ssize_t n = recv(c->fd, c->in + c->ilen, c->icap - c->ilen, 0);
    if (n == 0 && opt_http && c->closing && c->ioff == c->ilen) { reconnect(c); return; }
    if (n == 0) { kill_conn(c, E_CLOSED, "server closed the connection"); return; }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        kill_conn(c, E_CLOSED, strerror(errno));
        return;
    }
    c->ilen += (size_t)n;
    parse_input(c, now());
    if (c->ioff == c->ilen) c->ioff = c->ilen = 0;
    if (opt_http && c->closing && !c->dead) reconnect(c);
}

static int open_conn(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) { perror("loadgen: socket"); exit(2); }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = (long)opt_connect_timeout,
                         .tv_usec = (long)((opt_connect_timeout - (long)opt_connect_timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds connect() */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};
    if (inet_pton(AF_INET, opt_host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: bad host %s\n", opt_host);
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "loadgen: connect %s:%d: %s\n", opt_host, opt_port, strerror(errno));
        printf("{\"error\": \"connect: %s\"}\n", strerror(errno));
        exit(2);
    }
    struct timeval zero = {0, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* HTTP: the server closed `c` after a reply; what is queued for it (the
 * next call) goes on a new connection.  Calls it had in flight are lost. */
static void reconnect(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->inflight > (c->olen > c->ooff ? 1 : 0) && !stopping)
        error(E_CLOSED, "the server closed a connection with calls in flight");
    c->fd = open_conn();
    c->closing = 0;
    c->polling_out = 0;
    c->ilen = c->ioff = c->need = 0;
    c->reconnects++;
    reconnects_total++;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    flush_out(c);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) {
    if (!lat_n) return 0;
    size_t i = (size_t)(p * (lat_n - 1) + 0.5);
    return lat[i];
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port N [--host 127.0.0.1] [--conns C] [--depth D]\n"
            "               [--payload BYTES] [--framed | --unframed | --header]\n"
            "               [--protocol binary|compact|json]\n"
            "               [--warmup S] [--duration S] [--connect-timeout S]\n"
            "               [--http PATH]\n");
    exit(2);
}

int main(int argc, char **argv) {
    static struct option options[] = {
        {"port", required_argument, 0, 'p'},     {"host", required_argument, 0, 'h'},
        {"conns", required_argument, 0, 'c'},    {"depth", required_argument, 0, 'd'},
        {"payload", required_argument, 0, 's'},  {"framed", no_argument, 0, 'f'},
        {"unframed", no_argument, 0, 'u'},       {"warmup", required_argument, 0, 'w'},
        {"duration", required_argument, 0, 't'}, {"connect-timeout", required_argument, 0, 'T'},
        {"protocol", required_argument, 0, 'P'}, {"http", required_argument, 0, 'H'},
        {"header", no_argument, 0, 'X'},         {0, 0, 0, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (o) {
        case 'p': opt_port = atoi(optarg); break;
        case 'h': opt_host = optarg; break;
        case 'c': opt_conns = atoi(optarg); break;
        case 'd': opt_depth = atoi(optarg); break;
        case 's': opt_payload = atol(optarg); break;
        case 'f': opt_framed = 1; opt_header = 0; break;
        case 'u': opt_framed = 0; opt_header = 0; break;
        case 'X': opt_framed = 1; opt_header = 1; break;
        case 'w': opt_warmup = atof(optarg); break;
        case 't': opt_duration = atof(optarg); break;
        case 'T': opt_connect_timeout = atof(optarg); break;
        case 'H': opt_http = optarg; break;
        case 'P':
            opt_protocol = -1;
            for (int k = 0; k < 3; k++)
                if (strcmp(optarg, protocol_names[k]) == 0) opt_protocol = k;
            if (opt_protocol < 0) usage();
            break;
        default: usage();
        }
    }
    if (opt_port <= 0 || opt_conns < 1 || opt_depth < 1 || opt_payload < 0 ||
        opt_payload > 256L * 1024 * 1024 || opt_duration <= 0 || opt_warmup < 0)
        usage();
    if (opt_header && (opt_http || opt_protocol == P_JSON)) {
        fprintf(stderr, "loadgen: --header takes binary or compact, and no --http\n");
        exit(2);
    }
    if (opt_http) opt_framed = 0; /* one message per body */

    build_messages();
    epfd = epoll_create1(0);
    conns = calloc((size_t)opt_conns, sizeof *conns);
    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        c->fd = open_conn();
        c->slots = calloc((size_t)opt_depth, sizeof *c->slots);
        /* Distinct, per-connection seqid ranges, away from 0. */
        c->next_seqid = 1 + i * 1000003;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    }

    t_start = now();
    t_window = t_start + opt_warmup;
    t_end = t_window + opt_duration;
    for (int i = 0; i < opt_conns; i++) {
        for (int j = 0; j < opt_depth; j++) send_call(&conns[i], t_start);
        flush_out(&conns[i]);
    }

    double cpu_window_start = -1, cpu_window = 0, wall_window_start = 0;
    int in_window = 0;
    struct epoll_event events[256];
    for (;;) {
        double t = now();
        if (!in_window && t >= t_window) {
            in_window = 1;
            cpu_window_start = cpu_seconds();
            wall_window_start = t;
        }
        if (t >= t_end) break;
        double next = in_window ? t_end : t_window;
        int timeout = (int)((next - t) * 1000) + 1;
        int n = epoll_wait(epfd, events, 256, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("loadgen: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c->dead) continue;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_conn(c);
            if (!c->dead) flush_out(c);
        }
    }
    double t_stop = now();
    cpu_window = cpu_seconds() - cpu_window_start;
    /* Completions are counted in [t_window, t_end): exactly the duration. */
    double window = opt_duration;
    double cpu_wall = t_stop - wall_window_start;
    stopping = 1;

    int alive = 0;
    uint64_t conn_min = UINT64_MAX, conn_max = 0;
    for (int i = 0; i < opt_conns; i++) {
        conn_t *c = &conns[i];
        if (!c->dead) alive++;
        if (c->done_window < conn_min) conn_min = c->done_window;
        if (c->done_window > conn_max) conn_max = c->done_window;
        kill_conn(c, -1, NULL);
    }

    qsort(lat, lat_n, sizeof *lat, cmp_double);
    double mean = 0;
    for (size_t i = 0; i < lat_n; i++) mean += lat[i];
    if (lat_n) mean /= (double)lat_n;
    uint64_t total_errors = 0;
    for (int k = 0; k < E_COUNT; k++) total_errors += errors[k];

    printf("{\"conns\": %d, \"depth\": %d, \"payload\": %ld, \"framed\": %s, "
           "\"header\": %s, \"protocol\": \"%s\", ", opt_conns, opt_depth, opt_payload,
           opt_framed ? "true" : "false", opt_header ? "true" : "false",
           protocol_names[opt_protocol]);
    printf("\"warmup_s\": %.3f, \"duration_s\": %.3f, ", opt_warmup, window);
    printf("\"calls\": %llu, \"calls_per_s\": %.1f, ", (unsigned long long)done_window,
           done_window / window);
    printf("\"mb_per_s\": %.3f, ", bytes_in_window / window / 1e6);
    printf("\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, \"mean_us\": %.1f, "
           "\"max_us\": %.1f, ",
           pct(0.50), pct(0.99), pct(0.999), mean, lat_n ? lat[lat_n - 1] : 0.0);
    printf("\"conn_calls_min\": %llu, \"conn_calls_max\": %llu, \"conns_alive\": %d, ",
           (unsigned long long)(conn_min == UINT64_MAX ? 0 : conn_min),
           (unsigned long long)conn_max, alive);
    printf("\"errors\": %llu, \"error_kinds\": {", (unsigned long long)total_errors);
    int first = 1;
    for (int k = 0; k < E_COUNT; k++) {
        if (!errors[k]) continue;
        printf("%s\"%s\": %llu", first ? "" : ", ", error_names[k], (unsigned long long)errors[k]);
        first = 0;
    }
    printf("}, \"cpu_s\": %.3f, \"cpu_util\": %.3f", cpu_window, cpu_wall > 0 ? cpu_window / cpu_wall : 0.0);
    if (opt_http)
        printf(", \"http\": \"%s\", \"reconnects\": %llu", opt_http,
               (unsigned long long)reconnects_total);
    printf("}\n");
    return 0;
}
