/* A private PostgreSQL server for the unit tests: see pg_testnode.h. */
#include "pg_testnode.h"

#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Reads one line (without its newline) from fd into line; its length, or
 * -1 at end of file before any byte. */
static ssize_t read_line(int fd, char *line, size_t len)
{
    size_t n = 0;
    char c;
    while (n + 1 < len && read(fd, &c, 1) == 1 && c != '\n')
        line[n++] = c;
    line[n] = '\0';
    return n ? (ssize_t)n : -1;
}

int pg_testnode_start(pg_testnode *n)
{
    memset(n, 0, sizeof *n);
    n->in_fd = -1;
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        const char *py = getenv("PYTHON");
        execlp(py && *py ? py : "python3", "python3", PGNODE_PY, "serve", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    n->pid = pid;
    n->in_fd = in[1];
    char line[sizeof n->url + 64];
    ssize_t len = read_line(out[0], line, sizeof line);
    close(out[0]);
    if (len > 0 && strncmp(line, "postgresql://", 13) == 0) {
        snprintf(n->url, sizeof n->url, "%.200s", line);
        n->available = true;
        return 0;
    }
    pg_testnode_stop(n);
    if (len > 0 && strncmp(line, "unavailable: ", 13) == 0) {
        snprintf(n->why, sizeof n->why, "%s", line + 13);
        return 0;
    }
    fprintf(stderr, "pg_testnode: cannot start PostgreSQL: %s\n", len > 0 ? line : "no answer");
    return -1;
}

void pg_testnode_stop(pg_testnode *n)
{
    if (n->in_fd >= 0)
        close(n->in_fd);
    n->in_fd = -1;
    if (n->pid > 0) {
        int st;
        waitpid(n->pid, &st, 0);
    }
    n->pid = 0;
    n->available = false;
}

int pg_testnode_fresh_db(pg_testnode *n, char *url, size_t len)
{
    char name[32];
    snprintf(name, sizeof name, "t%u", ++n->dbs);
    PGconn *c = PQconnectdb(n->url);
    int ret = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        char sql[64];
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_COMMAND_OK)
            ret = 0;
        else
            fprintf(stderr, "pg_testnode: %s", PQerrorMessage(c));
        PQclear(r);
    } else {
        fprintf(stderr, "pg_testnode: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    /* The URL ends with the database's name, "/restspy". */
    const char *slash = strrchr(n->url, '/');
    snprintf(url, len, "%.*s/%s", (int)(slash - n->url), n->url, name);
    return ret;
}
