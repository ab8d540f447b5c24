#!/bin/sh
# Throwaway: rebuild the golden fixtures in ../golden from real clients (not run by make test).
# Needs a configured build tree with the generated codec: BUILD=/work/main/build-codec.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../../.." && pwd)
BUILD=${BUILD:-$ROOT/build-codec}
G=$BUILD/protocol/generated
OUT=$HERE/../golden
HELPER=${TMPDIR:-/tmp}/capture_answer
# The helper links the generated codec (without the test-only sample filler).
gcc -std=gnu11 -O1 -Wall -Wextra -Werror -I"$ROOT" -I"$G" -o "$HELPER" "$HERE/capture_answer.c" \
    $(ls "$G"/protocol/kafka_*.c | grep -v kafka_sample.c) "$ROOT/protocol/kafka_rt.c" \
    "$ROOT/common/lm_err.c"
CAP="/usr/bin/python3 $HERE/capture.py --helper $HELPER --out $OUT"

# librdkafka through kcat: one produce, one consume from offset 0.
RDK="librdkafka $(dpkg-query -W -f='${Version}' librdkafka1) via kcat $(dpkg-query -W -f='${Version}' kcat)"
$CAP --client librdkafka_producer --describe "$RDK (producer)" --timeout 15 -- \
    sh -c 'echo golden-value | kcat -P -b 127.0.0.1:{port} -t golden -p 0 -k golden-key -X linger.ms=0'
$CAP --client librdkafka_consumer --describe "$RDK (consumer)" --timeout 15 -- \
    kcat -C -b 127.0.0.1:{port} -t golden -p 0 -o 0 -c 1 -e -X fetch.wait.max.ms=500

# kafka-python (Debian python3-kafka).
KP="kafka-python $(/usr/bin/python3 -c 'import kafka; print(kafka.__version__)')"
$CAP --client kafka_python --describe "$KP" --timeout 25 -- \
    /usr/bin/python3 "$HERE/kafka_python_client.py" 127.0.0.1:{port}

# Java client (kafka-clients from ~/.m2, fetched with mvn dependency:get).
M2=$HOME/.m2/repository
CP=$(find "$M2/org/apache/kafka/kafka-clients/4.1.1" "$M2/org/lz4" "$M2/org/xerial/snappy" \
     "$M2/com/github/luben" "$M2/org/slf4j/slf4j-api/1.7.36" -name '*.jar' | tr '\n' ':')
$CAP --client java --describe "Java kafka-clients 4.1.1 (OpenJDK $(java -version 2>&1 | head -1 | cut -d'"' -f2))" \
    --timeout 40 -- java -cp "$CP" "$HERE/JavaClient.java" 127.0.0.1:{port}
