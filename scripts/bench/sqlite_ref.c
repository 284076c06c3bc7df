/* The reference for distinct small saves: SQLite itself, WAL with
 * synchronous=FULL (as the store runs it), inserting rows of the size of a
 * small version record, PER_TXN rows per transaction, from one thread.
 * With 1 per transaction it is the fsync limit of a store that commits
 * each save on its own; with 100 it shows what group commit can reach.
 *   bench_sqlite_ref DIR SECONDS PER_TXN  -> prints rows per second */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR SECONDS PER_TXN\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ref.db", argv[1]);
    double secs = atof(argv[2]);
    long per = atol(argv[3]);
    sqlite3 *db;
    sqlite3_stmt *ins;
    if (per < 1 || sqlite3_open(path, &db) != SQLITE_OK ||
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS v(id TEXT PRIMARY KEY, doc TEXT)",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO v VALUES(?1, ?2)", -1, &ins, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    static const char doc[] = "{\"content\":{\"senses\":[\"a sense of the word\"]},\"word\":"
                              "\"word\",\"provider\":\"bench\",\"data_hash\":\"0123456789abcdef"
                              "0123456789abcdef0123456789abcdef0123456789abcdef\"}";
    long rows = 0;
    double start = now_s(), end = start + secs;
    while (now_s() < end) {
        if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
            return 1;
        for (long i = 0; i < per; i++, rows++) {
            char id[64];
            snprintf(id, sizeof id, "w%ld", rows);
            sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(ins, 2, doc, -1, SQLITE_STATIC);
            if (sqlite3_step(ins) != SQLITE_DONE)
                return 1;
            sqlite3_reset(ins);
        }
        if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            return 1;
    }
    printf("%.0f\n", (double)rows / (now_s() - start));
    sqlite3_finalize(ins);
    sqlite3_close(db);
    return 0;
}
