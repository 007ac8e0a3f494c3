#!/usr/bin/env python3
"""Every AMQP 0-9-1 method that tshark dissects in a capture, one tab-separated line per method frame.

Usage: tshark_amqp.py CAPTURE [tshark options...]

Columns: frame number, source port, destination port, channel, class id, method id, exchange, routing key,
queue, delivery tag, reply code; a column is empty when the method has no such argument. `exchange` is the
`source` of exchange.bind/unbind. tshark's `-T fields` joins the fields of all AMQP frames in one packet,
so this reads its PDML, where each AMQP frame is its own `<proto name="amqp">`.
"""

import subprocess
import sys
import xml.etree.ElementTree as ET

ARGS = [
    ("exchange", "source"),
    ("routing_key",),
    ("queue",),
    ("delivery_tag",),
    ("reply_code",),
]


def fields(proto):
    out = {}
    for field in proto.iter("field"):
        name = field.get("name", "")
        if name not in out:
            out[name] = field.get("show", "")
    return out


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    pdml = subprocess.run(
        ["tshark", "-r", sys.argv[1], "-Y", "amqp", "-T", "pdml", *sys.argv[2:]],
        check=True,
        capture_output=True,
    ).stdout
    for packet in ET.fromstring(pdml).iter("packet"):
        number = sport = dport = ""
        for proto in packet.iter("proto"):
            name = proto.get("name")
            if name == "geninfo":
                number = fields(proto).get("num", "")
            elif name == "tcp":
                f = fields(proto)
                sport, dport = f.get("tcp.srcport", ""), f.get("tcp.dstport", "")
            elif name == "amqp":
                f = fields(proto)
                if f.get("amqp.type") != "1":
                    continue
                row = [
                    number,
                    sport,
                    dport,
                    f.get("amqp.channel", ""),
                    f.get("amqp.method.class", ""),
                    f.get("amqp.method.method", ""),
                ]
                for names in ARGS:
                    row.append(
                        next(
                            (
                                f["amqp.method.arguments." + n]
                                for n in names
                                if "amqp.method.arguments." + n in f
                            ),
                            "",
                        )
                    )
                print("\t".join(row))


if __name__ == "__main__":
    main()
