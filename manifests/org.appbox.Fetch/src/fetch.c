/* fetch: download http://HOST[:PORT]/PATH with HTTP/1.0 and write the body to stdout.
 *
 * Plain TCP only: there is no TLS, so https:// is refused.
 * Exit codes: 0 success, 1 network or protocol failure, 2 bad usage,
 * 3 the server answered with a status other than 2xx.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum { EXIT_NET = 1, EXIT_USAGE = 2, EXIT_HTTP = 3 };
enum { TIMEOUT_SECONDS = 30, MAX_HEADER = 65536 };

static void usage(FILE *out)
{
    fputs("Usage: fetch URL\n"
          "Download URL (http://HOST[:PORT]/PATH) with HTTP/1.0 and write the body\n"
          "to standard output. Redirects are not followed; https is not supported.\n"
          "\n"
          "  -h, --help    show this help and exit\n"
          "\n"
          "Exit status: 0 on success, 1 on a network or protocol failure, 2 on bad\n"
          "usage, 3 when the server answers with a status other than 2xx.\n",
          out);
}

struct url {
    char host[256];
    char port[6];
    const char *path;
};

/* Splits http://HOST[:PORT]/PATH; an IPv6 HOST is written [ADDR]. */
static int parse_url(const char *text, struct url *u)
{
    const char *p, *host_end, *port_start = NULL;
    size_t host_len;

    if (strncasecmp(text, "http://", 7) != 0) {
        if (strncasecmp(text, "https://", 8) == 0)
            fputs("fetch: https is not supported; use an http:// URL\n", stderr);
        else
            fputs("fetch: the URL must start with http://\n", stderr);
        return -1;
    }
    p = text + 7;
    if (*p == '[') {
        host_end = strchr(p, ']');
        if (!host_end) {
            fputs("fetch: missing ']' after the IPv6 address\n", stderr);
            return -1;
        }
        p++;
        host_len = (size_t)(host_end - p);
        host_end++;
        if (*host_end == ':')
            port_start = host_end + 1;
        else if (*host_end != '/' && *host_end != '\0') {
            fputs("fetch: unexpected text after the IPv6 address\n", stderr);
            return -1;
        }
    } else {
        host_end = p + strcspn(p, ":/");
        host_len = (size_t)(host_end - p);
        if (*host_end == ':')
            port_start = host_end + 1;
    }
    if (host_len == 0 || host_len >= sizeof u->host) {
        fputs("fetch: the URL has no host, or too long a host\n", stderr);
        return -1;
    }
    memcpy(u->host, p, host_len);
    u->host[host_len] = '\0';

    strcpy(u->port, "80");
    const char *rest = host_end;
    if (port_start) {
        size_t len = strcspn(port_start, "/");
        char *end;
        long port;
        if (len == 0 || len >= sizeof u->port) {
            fputs("fetch: bad port in the URL\n", stderr);
            return -1;
        }
        memcpy(u->port, port_start, len);
        u->port[len] = '\0';
        port = strtol(u->port, &end, 10);
        if (*end != '\0' || port < 1 || port > 65535) {
            fputs("fetch: bad port in the URL\n", stderr);
            return -1;
        }
        rest = port_start + len;
    }
    u->path = *rest ? rest : "/";
    /* Spaces or control characters would let the URL add lines to the request. */
    for (const char *c = u->host; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            fputs("fetch: the host contains a space or control character\n", stderr);
            return -1;
        }
    for (const char *c = u->path; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            fputs("fetch: the path contains a space or control character; percent-encode it\n",
                  stderr);
            return -1;
        }
    return 0;
}

static int connect_to(const struct url *u)
{
    struct addrinfo hints, *list, *ai;
    int fd = -1, err, saved = 0;
    struct timeval timeout = {TIMEOUT_SECONDS, 0};

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    err = getaddrinfo(u->host, u->port, &hints, &list);
    if (err != 0) {
        fprintf(stderr, "fetch: cannot resolve %s: %s\n", u->host,
                err == EAI_SYSTEM ? strerror(errno) : gai_strerror(err));
        return -1;
    }
    for (ai = list; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(list);
    if (fd < 0)
        fprintf(stderr, "fetch: cannot connect to %s port %s: %s\n", u->host, u->port,
                strerror(saved));
    return fd;
}

static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static ssize_t recv_some(int fd, char *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0 || errno != EINTR)
            return n;
    }
}

static const char *recv_error(void)
{
    return errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno);
}

/* Writes server text to stderr with control characters replaced, so a hostile
 * server cannot send terminal escapes through our messages. */
static void put_clean(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        fputc(c < 0x20 || c == 0x7f ? '?' : c, stderr);
    }
}

/* Finds header NAME in the header block and returns its value (or NULL). */
static const char *find_header(char *headers, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    for (char *line = strstr(headers, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            char *value = line + name_len + 1;
            value += strspn(value, " \t");
            *len = strcspn(value, "\r\n");
            return value;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct url u;
    static char header[MAX_HEADER + 1];
    char request[8192], body[65536];
    size_t have = 0;
    char *end = NULL;
    int fd, n;

    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (parse_url(argv[1], &u) != 0)
        return EXIT_USAGE;
    /* A closed stdout must be an error we report, not a silent SIGPIPE death. */
    signal(SIGPIPE, SIG_IGN);

    int ipv6 = strchr(u.host, ':') != NULL;
    n = snprintf(request, sizeof request,
                 "GET %s HTTP/1.0\r\nHost: %s%s%s%s%s\r\nUser-Agent: appbox-fetch/1.0\r\n"
                 "Accept: */*\r\nConnection: close\r\n\r\n",
                 u.path, ipv6 ? "[" : "", u.host, ipv6 ? "]" : "",
                 strcmp(u.port, "80") ? ":" : "", strcmp(u.port, "80") ? u.port : "");
    if (n < 0 || (size_t)n >= sizeof request) {
        fputs("fetch: the URL is too long\n", stderr);
        return EXIT_USAGE;
    }

    fd = connect_to(&u);
    if (fd < 0)
        return EXIT_NET;
    if (send_all(fd, request, (size_t)n) != 0) {
        fprintf(stderr, "fetch: cannot send the request: %s\n", strerror(errno));
        return EXIT_NET;
    }

    /* Read until the blank line that ends the headers. */
    while (!end) {
        ssize_t got;
        if (have == MAX_HEADER) {
            fputs("fetch: the response headers are too long\n", stderr);
            return EXIT_NET;
        }
        got = recv_some(fd, header + have, MAX_HEADER - have);
        if (got < 0) {
            fprintf(stderr, "fetch: cannot read the response: %s\n", recv_error());
            return EXIT_NET;
        }
        if (got == 0) {
            fputs("fetch: the server closed the connection before the end of the headers\n",
                  stderr);
            return EXIT_NET;
        }
        have += (size_t)got;
        header[have] = '\0';
        end = strstr(header, "\r\n\r\n");
    }

    int major, minor, status;
    if (sscanf(header, "HTTP/%d.%d %3d", &major, &minor, &status) != 3) {
        fputs("fetch: the server did not answer with HTTP\n", stderr);
        return EXIT_NET;
    }
    size_t header_len = (size_t)(end - header) + 4;
    end[2] = '\0'; /* keep the last header's CRLF for find_header */
    if (status < 200 || status > 299) {
        size_t reason_len = strcspn(header, "\r\n");
        size_t loc_len;
        const char *location = find_header(header, "Location", &loc_len);
        fputs("fetch: the server answered: ", stderr);
        put_clean(header, reason_len);
        fputc('\n', stderr);
        if (location && status >= 300 && status < 400) {
            fputs("fetch: it redirects to ", stderr);
            put_clean(location, loc_len);
            fputs(" (not followed)\n", stderr);
        }
        return EXIT_HTTP;
    }

    long long expected = -1, written = 0;
    size_t cl_len;
    const char *cl = find_header(header, "Content-Length", &cl_len);
    if (cl) {
        char *stop;
        expected = strtoll(cl, &stop, 10);
        if (stop == cl || expected < 0)
            expected = -1;
    }

    /* Whatever came after the headers is the start of the body. */
    size_t extra = have - header_len;
    if (extra > 0 && fwrite(header + header_len, 1, extra, stdout) != extra)
        goto write_error;
    written += (long long)extra;
    for (;;) {
        ssize_t got = recv_some(fd, body, sizeof body);
        if (got < 0) {
            fprintf(stderr, "fetch: cannot read the body: %s\n", recv_error());
            return EXIT_NET;
        }
        if (got == 0)
            break;
        if (fwrite(body, 1, (size_t)got, stdout) != (size_t)got)
            goto write_error;
        written += got;
    }
    close(fd);
    if (fflush(stdout) != 0)
        goto write_error;
    if (expected >= 0 && written < expected) {
        fprintf(stderr, "fetch: the connection closed after %lld of %lld bytes\n", written,
                expected);
        return EXIT_NET;
    }
    return 0;

write_error:
    fprintf(stderr, "fetch: cannot write to standard output: %s\n", strerror(errno));
    return EXIT_NET;
}
