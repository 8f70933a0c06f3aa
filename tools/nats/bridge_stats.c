/*
 * bridge_stats.c - the bridge's counters, as the JSON answer to
 * $BRIDGE.<name>.STATS and as the line it logs when it stops.
 *
 * Nothing is lost silently: every message that did not cross is in one of
 * the dropped_* counters, by where it was lost, and `dropped` is their sum
 * (docs/scaling.md, "Counters"). libnats' own drops (a subscription whose
 * pending limit overflowed) are read from libnats when asked.
 */
#include "bridge.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

uint64_t bridge_stats_dropped(struct bridge *b)
{
    const struct bridge_stats *s = &b->stats;
    return s->dropped_export + s->dropped_import + s->dropped_bus_slow + s->dropped_replies +
           bridge_nats_dropped(b);
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_object_new_uint64(v));
}

int bridge_stats_json(struct bridge *b, char **out, size_t *len)
{
    const struct bridge_stats *s = &b->stats;
    json_object *o = json_object_new_object();
    if (o == NULL) {
        return -ENOMEM;
    }
    json_object_object_add(o, "name", json_object_new_string(b->opt.name));
    json_object_object_add(o, "id", json_object_new_string(b->id));
    add_u64(o, "exported", s->exported);
    add_u64(o, "imported", s->imported);
    add_u64(o, "requests", s->requests);
    add_u64(o, "replies", s->replies);
    add_u64(o, "no_responders", s->no_responders);
    add_u64(o, "dropped", bridge_stats_dropped(b));
    add_u64(o, "dropped_export", s->dropped_export);
    add_u64(o, "dropped_import", s->dropped_import);
    add_u64(o, "dropped_bus_slow", s->dropped_bus_slow);
    add_u64(o, "dropped_nats_slow", bridge_nats_dropped(b));
    add_u64(o, "dropped_replies", s->dropped_replies);
    add_u64(o, "loops", s->loops);
    add_u64(o, "bus_errors", s->bus_errors);
    json_object_object_add(o, "nats_connected",
                           json_object_new_boolean(atomic_load(&s->nats_connected)));
    json_object_object_add(o, "bus_connected", json_object_new_boolean(s->bus_connected));
    add_u64(o, "nats_reconnects", atomic_load(&s->nats_reconnects));
    add_u64(o, "nats_disconnects", atomic_load(&s->nats_disconnects));
    add_u64(o, "bus_reconnects", s->bus_reconnects);
    const char *text =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    *len = strlen(text);
    *out = strdup(text);
    json_object_put(o);
    return *out == NULL ? -ENOMEM : 0;
}

void bridge_stats_print(struct bridge *b)
{
    char *json;
    size_t len;
    if (bridge_stats_json(b, &json, &len) == 0) {
        bridge_log(b, BRIDGE_LOG_NORMAL, "stats %s", json);
        free(json);
    }
}
