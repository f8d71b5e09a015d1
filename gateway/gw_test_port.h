/*
 * gw_test_port.h — a loopback TCP port nobody listens on, for the gateway unit
 * tests (admin_test_http.c's t_free_port, ledger_client_test.c): bind
 * 127.0.0.1:0, read the port the kernel chose, close. Header-only.
 */
#ifndef GW_TEST_PORT_H
#define GW_TEST_PORT_H
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* The port, or -1 if none could be had. */
static inline int gw_test_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

#endif
