/* nrm-authz-doc: the authorization matrix (common/nrm_authz.c) as Markdown.
 *
 *   nrm-authz-doc            prints the matrix
 *   nrm-authz-doc FILE       replaces the lines between the markers NRM_AUTHZ_BEGIN and
 *                            NRM_AUTHZ_END of FILE (deploy/OPERATIONS.md) by the matrix
 *
 * Exit 0, 1 when FILE has no markers, 2 on usage or I/O errors. */
#include "nrm_authz.h"

#include <stdlib.h>
#include <string.h>

#define S_BEGIN NRM_AUTHZ_DOC_BEGIN
#define S_END NRM_AUTHZ_DOC_END

/* Reads the whole file into a malloc'd string (caller frees), or NULL. */
static char *s_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, mem);
    fclose(f);
    fclose(mem);
    return text;
}

/* Rewrites the section of path between the markers. Returns the exit code. */
static int s_splice(const char *path)
{
    char *text = s_read(path);
    if (!text) {
        fprintf(stderr, "nrm-authz-doc: cannot read %s\n", path);
        return 2;
    }
    char *begin = strstr(text, S_BEGIN);
    char *end = begin ? strstr(begin, S_END) : NULL;
    if (!end) {
        fprintf(stderr, "nrm-authz-doc: %s has no %s ... %s section\n", path, S_BEGIN, S_END);
        free(text);
        return 1;
    }
    FILE *out = fopen(path, "wb");
    if (!out) {
        fprintf(stderr, "nrm-authz-doc: cannot write %s\n", path);
        free(text);
        return 2;
    }
    fwrite(text, 1, (size_t)(begin - text) + strlen(S_BEGIN), out);
    fputc('\n', out);
    nrm_authz_markdown(out);
    fputs(end, out);
    int rc = fclose(out) == 0 ? 0 : 2;
    free(text);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: nrm-authz-doc [FILE]\n");
        return 2;
    }
    if (argc == 2)
        return s_splice(argv[1]);
    nrm_authz_markdown(stdout);
    return 0;
}
