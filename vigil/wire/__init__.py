"""The ground every layer stands on: what crosses Vigil's topics and tables.

``records`` (the wire schema of every topic), ``codes`` (observation codes, units and
plausible ranges), ``state`` (the patients table's msgpack), ``durations`` (event time in
milliseconds), ``consumed`` (a consumed Kafka record and its dead letter). These import no
other Vigil package, so the stream, the models, the alerts and the tools above them can
all depend on them without pointing back up.
"""
