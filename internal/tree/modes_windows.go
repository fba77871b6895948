package tree

// Windows keeps a read-only attribute, not permission bits.
const defaultModes = ModesPortable
