#!/usr/bin/python3
"""Throwaway kafka-python client for capture.py: one produce, one fetch from offset 0."""
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

boot = sys.argv[1]
p = KafkaProducer(bootstrap_servers=boot, client_id="golden-kafka-python", acks=1,
                  linger_ms=0, request_timeout_ms=5000, max_block_ms=5000)
p.send("golden", key=b"golden-key", value=b"golden-value", partition=0).get(timeout=10)
p.close(timeout=2)
c = KafkaConsumer(bootstrap_servers=boot, client_id="golden-kafka-python",
                  enable_auto_commit=False, fetch_max_wait_ms=200, request_timeout_ms=5000)
tp = TopicPartition("golden", 0)
c.assign([tp])
c.seek(tp, 0)
c.poll(timeout_ms=1500)
c.close()
