/* Connection churn through a SOCKS5 proxy (or direct), for bench/socks5 (compiled by it with cc).
 *
 *   churn client PROXY_PORT DEST_PORT COUNT SECS   (PROXY_PORT 0: connect to DEST_PORT directly)
 *       up to COUNT sequential connections to 127.0.0.1, for at most SECS seconds, each: connect,
 *       the SOCKS5 exchange (no authentication; CONNECT 127.0.0.1:DEST_PORT), 32 bytes sent, the
 *       same 32 bytes expected back, then EOF expected, close. Prints one line:
 *       RESULT done=N secs=S cpu=C bad=B err="..."
 *   churn echo PROCS
 *       listens on 127.0.0.1:0, prints the port, forks PROCS processes that each accept a
 *       connection, read 32 bytes, write them back and close (blocking, one at a time).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int read_full(int fd, unsigned char *b, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const unsigned char *b, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t r = write(fd, b + put, n - put);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        put += (size_t)r;
    }
    return 0;
}

/* one connection; returns 0 ok, 1 wrong echo, -1 error (msg set) */
static int one(int pport, int dport, const char **msg) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons(pport ? pport : dport);
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc = -1;
    unsigned char b[64], m[32];
    struct timeval tv = {10, 0};
    if (fd < 0) { *msg = "socket"; return -1; }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int one_ = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_, sizeof one_);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { *msg = "connect"; goto out; }
    if (pport) {
        static const unsigned char hello[3] = {5, 1, 0};
        unsigned char req[10] = {5, 1, 0, 1, 127, 0, 0, 1, (unsigned char)(dport >> 8), (unsigned char)dport};
        if (write_full(fd, hello, 3) || read_full(fd, b, 2)) { *msg = "SOCKS5 greeting"; goto out; }
        if (b[0] != 5 || b[1] != 0) { *msg = "SOCKS5 method refused"; goto out; }
        if (write_full(fd, req, 10) || read_full(fd, b, 4)) { *msg = "SOCKS5 CONNECT"; goto out; }
        if (b[0] != 5 || b[1] != 0) { *msg = "SOCKS5 CONNECT refused"; goto out; }
        size_t alen = b[3] == 1 ? 4 : b[3] == 4 ? 16 : 0;
        if (b[3] == 3) { if (read_full(fd, b, 1)) { *msg = "SOCKS5 reply"; goto out; } alen = b[0]; }
        if (read_full(fd, b, alen + 2)) { *msg = "SOCKS5 reply address"; goto out; }
    }
    for (int i = 0; i < 32; i++) m[i] = (unsigned char)('E' + i);
    if (write_full(fd, m, 32) || read_full(fd, b, 32)) { *msg = "echo"; goto out; }
    if (memcmp(b, m, 32) != 0) { rc = 1; *msg = "wrong echo"; goto out; }
    ssize_t r = read(fd, b, 1);
    if (r != 0) { *msg = r > 0 ? "more than the echo" : "no EOF after the echo"; goto out; }
    rc = 0;
out:
    close(fd);
    return rc;
}

static int client(int pport, int dport, long count, double secs) {
    long done = 0, bad = 0;
    const char *err = "";
    double t0 = now();
    while (done < count && now() - t0 < secs) {
        const char *msg = "";
        int r = one(pport, dport, &msg);
        if (r < 0) { err = msg; break; }
        if (r > 0) { bad++; err = msg; }
        done++;
    }
    double el = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("RESULT done=%ld secs=%.6f cpu=%.6f bad=%ld err=\"%s%s%s\"\n", done, el, cpu, bad, err,
           *err && errno ? ": " : "", *err && errno ? strerror(errno) : "");
    return 0;
}

static int echo(int procs) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int ls = socket(AF_INET, SOCK_STREAM, 0), on = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096) ||
        getsockname(ls, (struct sockaddr *)&a, &al)) { perror("listen"); return 1; }
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (int i = 1; i < procs; i++)
        if (fork() == 0) break;
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) continue;
        unsigned char b[32];
        struct timeval tv = {10, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (read_full(c, b, 32) == 0) write_full(c, b, 32);
        close(c);
    }
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "client"))
        return client(atoi(argv[2]), atoi(argv[3]), atol(argv[4]), atof(argv[5]));
    if (argc == 3 && !strcmp(argv[1], "echo")) return echo(atoi(argv[2]));
    fprintf(stderr, "usage: churn client PROXY_PORT DEST_PORT COUNT SECS | churn echo PROCS\n");
    return 2;
}
