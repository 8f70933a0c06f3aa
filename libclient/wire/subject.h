/*
 * subject.h - the subject grammar (docs/protocol.md, "Subjects and
 * patterns"), beyond the public sb_subject_valid(), sb_pattern_valid() and
 * sb_pattern_match(): the one tokenizer, the `$` rule, and whether one
 * pattern covers another.
 *
 * Everything that walks a subject or pattern token by token (the matcher
 * here, the broker's subscription trie, retained store and ACL) splits it
 * with subject_next_token() (or subject_token_len(), on which it is built,
 * where a walk moves its own pointer: the trie's match) and asks
 * subject_wildcard_may_take() whether a wildcard may stand for a token, so
 * that the grammar is written once. Both are inline: the broker's trie runs
 * them for every token of every message it routes.
 */
#ifndef SOCKBUS_SUBJECT_H
#define SOCKBUS_SUBJECT_H

#include "sockbus.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * The length of the token that starts s[0..len): up to the first dot, or
 * all of it. The one place where a token ends.
 */
static inline size_t subject_token_len(const char *s, size_t len)
{
    const char *dot = memchr(s, '.', len);
    return dot != NULL ? (size_t)(dot - s) : len;
}

/*
 * The next token of s[0..len) from *pos: writes it to *tok and *tok_len
 * and moves *pos past it and its dot. Returns false, writing nothing, when
 * no token is left (*pos >= len). Start with *pos = 0. On a valid subject
 * or pattern every token has at least one byte. Other input is split all
 * the same, without reading past len: a token between two dots (or before
 * a first dot) is empty but still points at a byte of s, and a last dot
 * ends the tokens.
 */
static inline bool subject_next_token(const char *s, size_t len, size_t *pos, const char **tok,
                                      size_t *tok_len)
{
    if (*pos >= len) {
        return false;
    }
    const char *start = s + *pos;
    size_t n = subject_token_len(start, len - *pos);
    *tok = start;
    *tok_len = n;
    *pos += n + 1; /* past the dot, or one past the end */
    return true;
}

/*
 * The `$` rule: may a wildcard ('*' or '>') stand for the token `tok` (one
 * that subject_next_token() gave), found at the first position of a subject
 * (`first`) or further on? Not when it is the first token and starts with
 * '$': broker subjects such as $SYS.STATS are seen only by a pattern that
 * names them ("$SYS.>"). Later tokens are not concerned: "a.*" matches
 * "a.$b".
 */
static inline bool subject_wildcard_may_take(bool first, const char *tok)
{
    return !(first && tok[0] == '$');
}

/* Is the token tok[0..len) exactly the one character `c` ('*' or '>')? */
static inline bool subject_token_is(const char *tok, size_t len, char c)
{
    return len == 1 && tok[0] == c;
}

/*
 * Does pattern `allowed` cover pattern `requested`: is every subject that
 * `requested` matches also matched by `allowed`? Token by token: '>'
 * covers one or more remaining tokens of any kind, '*' covers one token
 * that is a literal or '*', a literal covers only the same literal; and by
 * the `$` rule a pattern whose first token is a wildcard does not cover one
 * whose first token starts with '$'. Both must be valid patterns. A pure
 * function of the bytes: it allocates nothing.
 */
bool subject_pattern_covers(const char *allowed, size_t allowed_len, const char *requested,
                            size_t requested_len);

#endif /* SOCKBUS_SUBJECT_H */
