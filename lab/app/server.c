/*
 * The lab's fixture application ("lab/backend"): a tiny static HTTP server.
 *
 * Listens on $APP_LISTEN (IP:PORT, e.g. 127.0.10.11:8080). The version and health it reports are baked into
 * the image files, never taken from the environment:
 *   /app/VERSION  e.g. "v1"
 *   /app/HEALTHY  "ok" (GET /health -> 200) or "error" (GET /health -> 500)
 * Routes: GET /health -> {"status": "ok", "version": "v1"}; GET /version -> "v1\n"; GET / -> a greeting.
 * Built statically (lab/build-app-images.sh) so the image holds only this binary and busybox.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static char version[64] = "unknown";
static char healthy[16] = "error";

static void read_word(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(buf, (int)size, f)) buf[strcspn(buf, " \r\n")] = '\0';
    fclose(f);
}

static void on_term(int sig) { (void)sig; _exit(0); }

static void reply(int fd, int code, const char *reason, const char *type, const char *body, int head) {
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-App-Version: %s\r\nConnection: close\r\n\r\n",
                     code, reason, type, strlen(body), version);
    if (write(fd, hdr, (size_t)n) < 0) return;
    if (!head && write(fd, body, strlen(body)) < 0) return;
}

static void serve(int fd) {
    char req[4096];
    size_t len = 0;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (len < sizeof req - 1) {
        ssize_t r = read(fd, req + len, sizeof req - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    req[len] = '\0';
    char method[16] = "", path[1024] = "";
    if (sscanf(req, "%15s %1023s", method, path) != 2) {
        reply(fd, 400, "Bad Request", "text/plain", "bad request\n", 0);
        return;
    }
    char *q = strchr(path, '?');
    if (q) *q = '\0';
    int head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        reply(fd, 405, "Method Not Allowed", "text/plain", "method not allowed\n", 0);
        return;
    }
    char body[256];
    int ok = strcmp(healthy, "ok") == 0;
    if (strcmp(path, "/health") == 0) {
        snprintf(body, sizeof body, "{\"status\": \"%s\", \"version\": \"%s\"}\n", ok ? "ok" : "error", version);
        reply(fd, ok ? 200 : 500, ok ? "OK" : "Internal Server Error", "application/json", body, head);
    } else if (strcmp(path, "/version") == 0) {
        snprintf(body, sizeof body, "%s\n", version);
        reply(fd, 200, "OK", "text/plain", body, head);
    } else if (strcmp(path, "/") == 0) {
        snprintf(body, sizeof body, "lab backend %s\n", version);
        reply(fd, 200, "OK", "text/plain", body, head);
    } else {
        reply(fd, 404, "Not Found", "text/plain", "not found\n", head);
    }
    printf("%s %s\n", method, path);
    fflush(stdout);
}

int main(void) {
    read_word("/app/VERSION", version, sizeof version);
    read_word("/app/HEALTHY", healthy, sizeof healthy);
    const char *listen_on = getenv("APP_LISTEN");
    if (!listen_on || !*listen_on) listen_on = "127.0.0.1:8080";
    char host[64];
    const char *colon = strrchr(listen_on, ':');
    if (!colon || (size_t)(colon - listen_on) >= sizeof host) {
        fprintf(stderr, "APP_LISTEN must be IP:PORT, got %s\n", listen_on);
        return 2;
    }
    memcpy(host, listen_on, (size_t)(colon - listen_on));
    host[colon - listen_on] = '\0';
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "APP_LISTEN: bad IPv4 address %s\n", host);
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 64) < 0) {
        fprintf(stderr, "cannot listen on %s: %s\n", listen_on, strerror(errno));
        return 1;
    }
    printf("lab backend %s (%s) listening on %s\n", version, healthy, listen_on);
    fflush(stdout);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            sleep(1);
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(s);
            serve(c);
            shutdown(c, SHUT_WR);
            close(c);
            _exit(0);
        }
        close(c);
    }
}
