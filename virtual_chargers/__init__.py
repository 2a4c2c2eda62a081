"""Virtual OCPP 1.6J charge points that simulate real EVs, at real or accelerated time.

config      charger configuration keys (OCPP 1.6 chapter 9), pure
simulation  one connector's state machine and meter, pure
queue       the offline queue of transaction messages, pure
station     one charge point: the OCPP client around the pure parts
fleet       runs a scenario's stations and sessions in simulated time
display     the live terminal table
__main__    the `virtual-chargers` command
"""
