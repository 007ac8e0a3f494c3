#!/usr/bin/env python3
"""One AMQP 0-9-1 session with pika, every step of which the AMQP end-to-end test checks podtap reports.

Usage: amqp_client.py HOST PORT N

On channel 1: declare a direct exchange and a queue, bind them, publish N messages, consume them with
basic.consume (acking each), cancel the consumer, publish one more and take it with basic.get (ack it),
basic.get on the empty queue, then a passive declare of a queue that does not exist (the broker closes
the channel: 404). On channel 2: publisher confirms on, N publishes each confirmed, close the channel.
Then close the connection. Prints one JSON line: this process's pid and name, and what happened.
"""

import json
import os
import sys

import pika

EXCHANGE = "podtap-ex"
QUEUE = "podtap-q"
KEY = "podtap-key"
MISSING = "podtap-missing"


def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    report = {"pid": os.getpid(), "process": open("/proc/self/comm").read().strip()}
    params = pika.ConnectionParameters(
        host=host,
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
        connection_attempts=1,
        socket_timeout=10,
    )
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.exchange_declare(exchange=EXCHANGE, exchange_type="direct")
    ch.queue_declare(queue=QUEUE)
    ch.queue_bind(queue=QUEUE, exchange=EXCHANGE, routing_key=KEY)
    for i in range(n):
        ch.basic_publish(exchange=EXCHANGE, routing_key=KEY, body=b"message %d" % i)

    consumed = []

    def on_message(channel, method, _properties, body):
        consumed.append(body.decode())
        channel.basic_ack(delivery_tag=method.delivery_tag)
        if len(consumed) == n:
            channel.stop_consuming()

    ch.basic_consume(queue=QUEUE, on_message_callback=on_message)
    ch.start_consuming()
    report["consumed"] = len(consumed)

    ch.basic_publish(exchange=EXCHANGE, routing_key=KEY, body=b"for basic.get")
    method, _properties, body = None, None, None
    for _ in range(50):
        method, _properties, body = ch.basic_get(queue=QUEUE)
        if method is not None:
            break
        conn.sleep(0.05)
    report["get_tag"] = method.delivery_tag if method else None
    ch.basic_ack(delivery_tag=method.delivery_tag)
    method, _properties, _body = ch.basic_get(queue=QUEUE)
    report["get_empty"] = method is None

    try:
        ch.queue_declare(queue=MISSING, passive=True)
        report["missing"] = "declared"
    except pika.exceptions.ChannelClosedByBroker as e:
        report["missing"] = e.reply_code

    ch2 = conn.channel()
    ch2.confirm_delivery()
    confirmed = 0
    for i in range(n):
        ch2.basic_publish(exchange=EXCHANGE, routing_key=KEY, body=b"confirmed %d" % i)
        confirmed += 1
    report["confirmed"] = confirmed
    ch2.queue_purge(queue=QUEUE)
    ch2.close()
    conn.close()
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
