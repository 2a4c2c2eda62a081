"""One module per family of strategies; :mod:`csms.scheduler.registry` names them."""
