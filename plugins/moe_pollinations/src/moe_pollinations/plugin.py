"""Not implemented yet: this plugin installs and registers no kinds, so nothing pretends to work.

`moe plugins` lists it as registering nothing; a config that names one of its future kinds
fails at startup with the list of kinds that do exist.
"""
