"""CoreDNS's plugins as labkit implements them, one module each, named and ordered as in CoreDNS's plugin.cfg.

Chain order (which plugin sees a query first) comes from plugin.cfg, never from the Corefile:
prometheus → errors → log → loadbalance → cache → rewrite → hosts → kubernetes → loop → forward → whoami.
`reload`, `ready` and `health` have no place in the chain: they watch the Corefile and serve HTTP.
Each module's `setup(c)` reads the directive's options the way the plugin's setup.go does (same errors) and adds
its handler with `c.add_plugin`.
"""
