"""signxai 1.x module path ``signxai.tf_signxai.methods`` (see :mod:`signxai.tf_signxai.methods.wrappers`)."""
