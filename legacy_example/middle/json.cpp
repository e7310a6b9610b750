// Boost.JSON's implementation, compiled once here (header-only mode; Debian ships no libboost_json).
#include <boost/json/src.hpp>
