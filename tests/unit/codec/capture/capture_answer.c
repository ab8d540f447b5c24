/* Throwaway helper for capture.py (not built by CMake, not run by make test).
 * Reads one request frame (header + body, no size prefix) on stdin, decodes it with laminar's
 * generated codec, and writes an answer frame (size prefix + response header + body) on stdout,
 * encoded with our own encoder: just enough for a real client to move on from ApiVersions to
 * Metadata, Produce and Fetch. Exit status 0 = answered, 1 = no answer (the listener closes).
 * Usage: capture_answer PORT < request > response */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/kafka_api.h"

static const struct kafka_uuid TOPIC_ID = {{0x6c, 0x61, 0x6d, 0x69, 0x6e, 0x61, 0x72, 0x01, 0x02,
                                            0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}};

static int advertised(int16_t key)
{
    return key == 0 || key == 1 || key == 3 || key == 18;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int32_t port = atoi(argv[1]);
    static uint8_t in[1 << 20], out[1 << 20];
    size_t len = fread(in, 1, sizeof(in), stdin);
    struct kafka_reader r;
    kafka_reader_init(&r, in, len);
    if (len < 4)
        return 1;
    int16_t key = (int16_t)((in[0] << 8) | in[1]);
    int16_t ver = (int16_t)((in[2] << 8) | in[3]);
    struct kafka_arena a;
    kafka_arena_init(&a, 1 << 24);
    const struct kafka_api_info *api = kafka_api_lookup(key);
    int hv = kafka_request_header_version(key, ver);
    struct kafka_request_header h;
    int16_t resp_ver = ver;
    int unsupported = 0;
    if (key == 18 && (api == NULL || hv < 0)) {
        /* KIP-511: unknown ApiVersions version -> error 35 with a v0 body. */
        hv = 1;
        unsupported = 1;
        resp_ver = 0;
    } else if (api == NULL || hv < 0) {
        fprintf(stderr, "capture_answer: no answer for key %d v%d\n", key, ver);
        return 1;
    }
    int rc = kafka_request_header_decode(&r, (int16_t)hv, &h, &a);
    if (rc != 0) {
        fprintf(stderr, "capture_answer: header decode: %s\n", lm_errname(rc));
        return 1;
    }
    void *req = NULL;
    if (!unsupported) {
        req = calloc(1, api->request.struct_size);
        rc = api->request.decode(&r, ver, req, &a);
        if (rc != 0 || kafka_reader_left(&r) != 0) {
            fprintf(stderr, "capture_answer: %s v%d decode: %s, %zu bytes left\n", api->name, ver,
                    lm_errname(rc), kafka_reader_left(&r));
            return 1;
        }
    }
    const struct kafka_api_info *rapi = kafka_api_lookup(key);
    void *resp = calloc(1, rapi->response.struct_size);
    rapi->response.init(resp);
    if (key == 18) {
        struct kafka_api_versions_response *m = resp;
        static struct kafka_api_versions_response_api_version keys[64];
        int n = 0;
        for (size_t i = 0; i < kafka_api_count; i++) {
            if (!advertised(kafka_api_table[i].key))
                continue;
            keys[n].api_key = kafka_api_table[i].key;
            keys[n].min_version = kafka_api_table[i].min_version;
            keys[n].max_version = kafka_api_table[i].max_version;
            n++;
        }
        m->api_keys = keys;
        m->api_keys_count = n;
        m->error_code = unsupported ? 35 : 0;
    } else if (key == 3) {
        struct kafka_metadata_request *q = req;
        struct kafka_metadata_response *m = resp;
        static struct kafka_metadata_response_metadata_response_broker b;
        b.node_id = 0;
        b.host = KAFKA_STR("127.0.0.1");
        b.port = port;
        b.rack = KAFKA_STR_NULL;
        m->brokers = &b;
        m->brokers_count = 1;
        m->cluster_id = KAFKA_STR("laminar-capture");
        m->controller_id = 0;
        int nt = q->topics_count > 0 ? q->topics_count : 0;
        m->topics = calloc((size_t)nt + 1, sizeof(*m->topics));
        m->topics_count = nt;
        static int32_t replicas[1] = {0};
        for (int i = 0; i < nt; i++) {
            struct kafka_metadata_response_metadata_response_topic *t = &m->topics[i];
            t->name = q->topics[i].name;
            t->topic_id = TOPIC_ID;
            t->topic_authorized_operations = -2147483648;
            t->partitions = calloc(1, sizeof(*t->partitions));
            t->partitions_count = 1;
            t->partitions[0].leader_id = 0;
            t->partitions[0].leader_epoch = 0;
            t->partitions[0].replica_nodes = replicas;
            t->partitions[0].replica_nodes_count = 1;
            t->partitions[0].isr_nodes = replicas;
            t->partitions[0].isr_nodes_count = 1;
        }
    } else if (key == 0) {
        struct kafka_produce_request *q = req;
        struct kafka_produce_response *m = resp;
        m->responses = calloc((size_t)q->topic_data_count + 1, sizeof(*m->responses));
        m->responses_count = q->topic_data_count;
        for (int i = 0; i < q->topic_data_count; i++) {
            m->responses[i].name = q->topic_data[i].name;
            int np = q->topic_data[i].partition_data_count;
            m->responses[i].partition_responses =
                calloc((size_t)np + 1, sizeof(*m->responses[i].partition_responses));
            m->responses[i].partition_responses_count = np;
            for (int p = 0; p < np; p++) {
                struct kafka_produce_response_partition_produce_response *pr =
                    &m->responses[i].partition_responses[p];
                pr->index = q->topic_data[i].partition_data[p].index;
                pr->log_append_time_ms = -1;
                pr->error_message = KAFKA_STR_NULL;
                pr->current_leader.leader_id = -1;
                pr->current_leader.leader_epoch = -1;
            }
        }
    } else if (key == 1) {
        struct kafka_fetch_request *q = req;
        struct kafka_fetch_response *m = resp;
        m->responses = calloc((size_t)q->topics_count + 1, sizeof(*m->responses));
        m->responses_count = q->topics_count;
        for (int i = 0; i < q->topics_count; i++) {
            m->responses[i].topic = q->topics[i].topic;
            m->responses[i].topic_id = q->topics[i].topic_id;
            int np = q->topics[i].partitions_count;
            m->responses[i].partitions =
                calloc((size_t)np + 1, sizeof(*m->responses[i].partitions));
            m->responses[i].partitions_count = np;
            for (int p = 0; p < np; p++) {
                struct kafka_fetch_response_partition_data *pd = &m->responses[i].partitions[p];
                pd->partition_index = q->topics[i].partitions[p].partition;
                pd->last_stable_offset = 0;
                pd->log_start_offset = 0;
                pd->diverging_epoch.epoch = -1;
                pd->diverging_epoch.end_offset = -1;
                pd->current_leader.leader_id = -1;
                pd->current_leader.leader_epoch = -1;
                pd->snapshot_id.end_offset = -1;
                pd->snapshot_id.epoch = -1;
                pd->aborted_transactions_count = -1;
                pd->preferred_read_replica = -1;
                pd->records = (struct kafka_bytes){NULL, 0};
            }
        }
    } else {
        return 1;
    }
    struct kafka_response_header rh;
    kafka_response_header_init(&rh);
    rh.correlation_id = h.correlation_id;
    int rhv = unsupported ? 0 : kafka_response_header_version(key, ver);
    struct kafka_writer w;
    kafka_writer_init(&w, out, sizeof(out));
    w.pos = 4;
    rc = kafka_response_header_encode(&w, (int16_t)rhv, &rh);
    if (rc == 0)
        rc = rapi->response.encode(&w, resp_ver, resp);
    if (rc != 0) {
        fprintf(stderr, "capture_answer: encode: %s\n", lm_errname(rc));
        return 1;
    }
    uint32_t n = (uint32_t)(w.pos - 4);
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    fwrite(out, 1, w.pos, stdout);
    fprintf(stderr, "capture_answer: %s v%d answered (%u bytes)\n", rapi->name, resp_ver, n);
    return 0;
}
