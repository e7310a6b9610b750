// Placeholder translation unit so the adapters library exists before its first source.
#include <fiberloop/net.hpp>
