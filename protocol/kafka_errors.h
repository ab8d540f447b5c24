/* Kafka wire error codes: the int16 error_code fields of every response.
 *
 * One X-macro table, X(name, code, retriable, message), in code order, following the error
 * table of the Kafka protocol guide ("Error Codes") as of Kafka 4.x. `retriable` is the guide's
 * "Retriable" column: a client may retry the same request after such an error (its exception
 * is a RetriableException in the Java client). Messages are our own short wording.
 *
 * Code 99 is absent on purpose: Kafka never assigned it. Add new codes at the end, in code
 * order; never renumber. These are separate from laminar's internal LM_E_* codes
 * (common/lm_err.h), which are mapped to Kafka codes at the handler boundary (DESIGN.md §7). */
#ifndef LAMINAR_PROTOCOL_KAFKA_ERRORS_H
#define LAMINAR_PROTOCOL_KAFKA_ERRORS_H

#include <stdbool.h>
#include <stdint.h>

/* clang-format off */
#define KAFKA_ERRORS(X)                                                                        \
    X(UNKNOWN_SERVER_ERROR, -1, false, "unexpected server error")                              \
    X(NONE, 0, false, "no error")                                                              \
    X(OFFSET_OUT_OF_RANGE, 1, false, "offset outside the range the partition holds")           \
    X(CORRUPT_MESSAGE, 2, true, "record failed its CRC, size or other validity check")         \
    X(UNKNOWN_TOPIC_OR_PARTITION, 3, true, "this server does not host the topic-partition")    \
    X(INVALID_FETCH_SIZE, 4, false, "invalid fetch size")                                      \
    X(LEADER_NOT_AVAILABLE, 5, true, "partition has no leader right now (election under way)") \
    X(NOT_LEADER_OR_FOLLOWER, 6, true, "this server is neither leader nor follower here")      \
    X(REQUEST_TIMED_OUT, 7, true, "request timed out")                                         \
    X(BROKER_NOT_AVAILABLE, 8, false, "broker not available")                                  \
    X(REPLICA_NOT_AVAILABLE, 9, true, "replica not available for this partition")              \
    X(MESSAGE_TOO_LARGE, 10, false, "request holds a message larger than the server accepts")  \
    X(STALE_CONTROLLER_EPOCH, 11, false, "request came from an old controller epoch")          \
    X(OFFSET_METADATA_TOO_LARGE, 12, false, "offset commit metadata string too large")         \
    X(NETWORK_EXCEPTION, 13, true, "connection closed before the response was read")           \
    X(COORDINATOR_LOAD_IN_PROGRESS, 14, true, "coordinator is still loading its state")        \
    X(COORDINATOR_NOT_AVAILABLE, 15, true, "coordinator not available")                        \
    X(NOT_COORDINATOR, 16, true, "this server is not the coordinator")                         \
    X(INVALID_TOPIC_EXCEPTION, 17, false, "illegal topic name, or write to an internal topic") \
    X(RECORD_LIST_TOO_LARGE, 18, false, "record batch larger than the segment size allows")    \
    X(NOT_ENOUGH_REPLICAS, 19, true, "fewer in-sync replicas than required")                   \
    X(NOT_ENOUGH_REPLICAS_AFTER_APPEND, 20, true, "written, but too few in-sync replicas")     \
    X(INVALID_REQUIRED_ACKS, 21, false, "acks value not allowed")                              \
    X(ILLEGAL_GENERATION, 22, false, "group generation id is not the current one")             \
    X(INCONSISTENT_GROUP_PROTOCOL, 23, false, "member protocols do not match the group's")     \
    X(INVALID_GROUP_ID, 24, false, "group id empty or invalid")                                \
    X(UNKNOWN_MEMBER_ID, 25, false, "member id not known to the group")                        \
    X(INVALID_SESSION_TIMEOUT, 26, false, "session timeout outside the allowed range")         \
    X(REBALANCE_IN_PROGRESS, 27, false, "group is rebalancing; rejoin")                        \
    X(INVALID_COMMIT_OFFSET_SIZE, 28, false, "offset commit rejected: metadata size invalid")  \
    X(TOPIC_AUTHORIZATION_FAILED, 29, false, "not authorized to access the topic")             \
    X(GROUP_AUTHORIZATION_FAILED, 30, false, "not authorized to access the group")             \
    X(CLUSTER_AUTHORIZATION_FAILED, 31, false, "not authorized for this cluster operation")    \
    X(INVALID_TIMESTAMP, 32, false, "timestamp outside the accepted range")                    \
    X(UNSUPPORTED_SASL_MECHANISM, 33, false, "SASL mechanism not enabled on this server")      \
    X(ILLEGAL_SASL_STATE, 34, false, "request not valid in the current SASL state")            \
    X(UNSUPPORTED_VERSION, 35, false, "API version not supported by this server")              \
    X(TOPIC_ALREADY_EXISTS, 36, false, "topic already exists")                                 \
    X(INVALID_PARTITIONS, 37, false, "invalid number of partitions")                           \
    X(INVALID_REPLICATION_FACTOR, 38, false, "invalid replication factor")                     \
    X(INVALID_REPLICA_ASSIGNMENT, 39, false, "invalid replica assignment")                     \
    X(INVALID_CONFIG, 40, false, "invalid configuration")                                      \
    X(NOT_CONTROLLER, 41, true, "this server is not the active controller")                    \
    X(INVALID_REQUEST, 42, false, "malformed or invalid request")                              \
    X(UNSUPPORTED_FOR_MESSAGE_FORMAT, 43, false, "not supported by the log's message format")  \
    X(POLICY_VIOLATION, 44, false, "request violates a configured policy")                     \
    X(OUT_OF_ORDER_SEQUENCE_NUMBER, 45, false, "producer sequence number out of order")        \
    X(DUPLICATE_SEQUENCE_NUMBER, 46, false, "producer sequence number already written")        \
    X(INVALID_PRODUCER_EPOCH, 47, false, "producer epoch is older than the current one")       \
    X(INVALID_TXN_STATE, 48, false, "operation not valid in the transaction's state")          \
    X(INVALID_PRODUCER_ID_MAPPING, 49, false, "producer id does not match the transactional id") \
    X(INVALID_TRANSACTION_TIMEOUT, 50, false, "transaction timeout above the server maximum")  \
    X(CONCURRENT_TRANSACTIONS, 51, true, "a previous transaction of this producer is ending")  \
    X(TRANSACTION_COORDINATOR_FENCED, 52, false, "transaction coordinator was replaced")       \
    X(TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 53, false, "not authorized for the transactional id") \
    X(SECURITY_DISABLED, 54, false, "security features are disabled")                          \
    X(OPERATION_NOT_ATTEMPTED, 55, false, "not attempted because a related operation failed")  \
    X(KAFKA_STORAGE_ERROR, 56, true, "disk error while accessing the log")                     \
    X(LOG_DIR_NOT_FOUND, 57, false, "log directory not found in the server config")            \
    X(SASL_AUTHENTICATION_FAILED, 58, false, "SASL authentication failed")                     \
    X(UNKNOWN_PRODUCER_ID, 59, false, "no state kept for this producer id")                    \
    X(REASSIGNMENT_IN_PROGRESS, 60, false, "a partition reassignment is in progress")          \
    X(DELEGATION_TOKEN_AUTH_DISABLED, 61, false, "delegation tokens are disabled")             \
    X(DELEGATION_TOKEN_NOT_FOUND, 62, false, "delegation token not found")                     \
    X(DELEGATION_TOKEN_OWNER_MISMATCH, 63, false, "principal does not own the token")          \
    X(DELEGATION_TOKEN_REQUEST_NOT_ALLOWED, 64, false, "token requests not allowed here")      \
    X(DELEGATION_TOKEN_AUTHORIZATION_FAILED, 65, false, "not authorized for the delegation token") \
    X(DELEGATION_TOKEN_EXPIRED, 66, false, "delegation token expired")                         \
    X(INVALID_PRINCIPAL_TYPE, 67, false, "principal type not supported")                       \
    X(NON_EMPTY_GROUP, 68, false, "group still has members")                                   \
    X(GROUP_ID_NOT_FOUND, 69, false, "group id not found")                                     \
    X(FETCH_SESSION_ID_NOT_FOUND, 70, true, "fetch session id not found")                      \
    X(INVALID_FETCH_SESSION_EPOCH, 71, true, "fetch session epoch is not the expected one")    \
    X(LISTENER_NOT_FOUND, 72, true, "leader has no endpoint on the request's listener")        \
    X(TOPIC_DELETION_DISABLED, 73, false, "topic deletion is disabled")                        \
    X(FENCED_LEADER_EPOCH, 74, true, "request's leader epoch is older than the leader's")      \
    X(UNKNOWN_LEADER_EPOCH, 75, true, "request's leader epoch is newer than the leader's")     \
    X(UNSUPPORTED_COMPRESSION_TYPE, 76, false, "compression type not supported by the reader") \
    X(STALE_BROKER_EPOCH, 77, false, "broker epoch has changed")                               \
    X(OFFSET_NOT_AVAILABLE, 78, true, "offset not available yet (high watermark behind)")      \
    X(MEMBER_ID_REQUIRED, 79, false, "group join needs a member id; rejoin with the one given") \
    X(PREFERRED_LEADER_NOT_AVAILABLE, 80, true, "preferred leader not available")              \
    X(GROUP_MAX_SIZE_REACHED, 81, false, "group is at its maximum size")                       \
    X(FENCED_INSTANCE_ID, 82, false, "static member fenced by a newer one with the same id")   \
    X(ELIGIBLE_LEADERS_NOT_AVAILABLE, 83, true, "no eligible leader for the election")         \
    X(ELECTION_NOT_NEEDED, 84, true, "leader election not needed")                             \
    X(NO_REASSIGNMENT_IN_PROGRESS, 85, false, "no partition reassignment in progress")         \
    X(GROUP_SUBSCRIBED_TO_TOPIC, 86, false, "group still subscribed to the topic")             \
    X(INVALID_RECORD, 87, false, "record failed broker-side validation")                       \
    X(UNSTABLE_OFFSET_COMMIT, 88, true, "pending transactional offsets; retry later")          \
    X(THROTTLING_QUOTA_EXCEEDED, 89, true, "throttling quota exceeded")                        \
    X(PRODUCER_FENCED, 90, false, "producer fenced by a newer one with the same id")           \
    X(RESOURCE_NOT_FOUND, 91, false, "resource not found")                                     \
    X(DUPLICATE_RESOURCE, 92, false, "resource given more than once")                          \
    X(UNACCEPTABLE_CREDENTIAL, 93, false, "credential does not meet the requirements")         \
    X(INCONSISTENT_VOTER_SET, 94, false, "voter sets of the quorum disagree")                  \
    X(INVALID_UPDATE_VERSION, 95, false, "invalid update version")                             \
    X(FEATURE_UPDATE_FAILED, 96, false, "feature update could not be applied")                 \
    X(PRINCIPAL_DESERIALIZATION_FAILURE, 97, false, "forwarded principal could not be decoded") \
    X(SNAPSHOT_NOT_FOUND, 98, false, "requested snapshot not found")                           \
    X(UNKNOWN_TOPIC_ID, 100, true, "this server does not know the topic id")                   \
    X(DUPLICATE_BROKER_REGISTRATION, 101, false, "broker id already registered")               \
    X(BROKER_ID_NOT_REGISTERED, 102, false, "broker id not registered")                        \
    X(INCONSISTENT_TOPIC_ID, 103, true, "topic id does not match the partition's")             \
    X(INCONSISTENT_CLUSTER_ID, 104, false, "cluster id does not match")                        \
    X(TRANSACTIONAL_ID_NOT_FOUND, 105, false, "transactional id not found")                    \
    X(FETCH_SESSION_TOPIC_ID_ERROR, 106, true, "fetch session topic ids inconsistent")         \
    X(INELIGIBLE_REPLICA, 107, false, "new leader or ISR member not eligible")                 \
    X(NEW_LEADER_ELECTED, 108, false, "a new leader was elected; request superseded")          \
    X(OFFSET_MOVED_TO_TIERED_STORAGE, 109, false, "offset now only in tiered storage")         \
    X(FENCED_MEMBER_EPOCH, 110, false, "member epoch fenced by the coordinator")               \
    X(UNRELEASED_INSTANCE_ID, 111, false, "instance id still held by another member")          \
    X(UNSUPPORTED_ASSIGNOR, 112, false, "assignor not supported by the group")                 \
    X(STALE_MEMBER_EPOCH, 113, false, "member epoch is stale")                                 \
    X(MISMATCHED_ENDPOINT_TYPE, 114, false, "request sent to the wrong kind of endpoint")      \
    X(UNSUPPORTED_ENDPOINT_TYPE, 115, false, "endpoint type not supported")                    \
    X(UNKNOWN_CONTROLLER_ID, 116, false, "controller id not known")                            \
    X(UNKNOWN_SUBSCRIPTION_ID, 117, false, "telemetry subscription id unknown or outdated")    \
    X(TELEMETRY_TOO_LARGE, 118, false, "telemetry push larger than the server accepts")        \
    X(INVALID_REGISTRATION, 119, false, "broker registration rejected by the controller")      \
    X(TRANSACTION_ABORTABLE, 120, false, "transaction failed; abort it to go on")              \
    X(INVALID_RECORD_STATE, 121, false, "record state does not allow this acknowledgement")    \
    X(SHARE_SESSION_NOT_FOUND, 122, true, "share session not found")                           \
    X(INVALID_SHARE_SESSION_EPOCH, 123, true, "share session epoch invalid")                   \
    X(FENCED_STATE_EPOCH, 124, false, "share-group state epoch does not match")                \
    X(INVALID_VOTER_KEY, 125, false, "voter key does not match this replica")                  \
    X(DUPLICATE_VOTER, 126, false, "voter already in the voter set")                           \
    X(VOTER_NOT_FOUND, 127, false, "voter not in the voter set")                               \
    X(INVALID_REGULAR_EXPRESSION, 128, false, "invalid regular expression")                    \
    X(REBOOTSTRAP_REQUIRED, 129, false, "client metadata stale; rebootstrap")                  \
    X(STREAMS_INVALID_TOPOLOGY, 130, false, "streams topology invalid")                        \
    X(STREAMS_INVALID_TOPOLOGY_EPOCH, 131, false, "streams topology epoch invalid")            \
    X(STREAMS_TOPOLOGY_FENCED, 132, false, "streams topology epoch outdated")                  \
    X(SHARE_SESSION_LIMIT_REACHED, 133, true, "share session limit reached")
/* clang-format on */

enum kafka_error_code {
#define KAFKA_ERROR_ENUM(name, code, retriable, message) KAFKA_##name = (code),
    KAFKA_ERRORS(KAFKA_ERROR_ENUM)
#undef KAFKA_ERROR_ENUM
};

/* kafka_error_name returns the static symbolic name ("UNSUPPORTED_VERSION") of a Kafka error
 * code, or "UNKNOWN_ERROR_CODE" for a code not in the table. */
const char *kafka_error_name(int16_t code);

/* kafka_error_message returns a static one-line description of a Kafka error code, or
 * "unknown Kafka error code" for a code not in the table. */
const char *kafka_error_message(int16_t code);

/* kafka_error_retriable tells whether a client may retry after this error; false for codes
 * not in the table. */
bool kafka_error_retriable(int16_t code);

/* kafka_error_known tells whether the code is in the table. */
bool kafka_error_known(int16_t code);

#endif
