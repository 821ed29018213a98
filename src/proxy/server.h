/* server: the `restspy proxy` command: wires config, sinks, workers and the
 * admin API together, and owns the process lifecycle.
 *
 * Signals: SIGTERM/SIGINT stop accepting, let in-flight requests finish (up
 * to grace_period), flush every record to the store and exit 0; SIGHUP
 * reopens the log file and reloads the config file (rules, redaction, limits
 * and timeouts; a bad file keeps the running config and says why on stderr). */
#ifndef RESTSPY_SERVER_H
#define RESTSPY_SERVER_H

/* argv[0] is "proxy". Returns the exit code: 0 clean stop, 1 runtime
 * failure (cannot listen, cannot open the store), 2 usage error. */
int server_main(int argc, char **argv, char *const *envp);

#endif
