/*
 * bq.h: public header of bsonq/, NEDB's BSON semantics layer (DESIGN.md section 1).
 *
 * bsonq/ is pure: functions over libbson documents, no I/O, no threads, no globals that
 * change after startup. Every other layer includes this header for the error type.
 */
#ifndef BQ_H
#define BQ_H

#include <bson/bson.h>

#include "bq_error.h"
#include "bq_type.h"

#endif
