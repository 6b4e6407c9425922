/*
 * eng.h: public header of engine/, the NEDB store (DESIGN.md sections 3 to 7): the op log
 * and its hash chain, the sequencer, MVCC, checkpoints, recovery, verify and provenance.
 * engine/ never includes wire/ or aggregation/.
 */
#ifndef ENG_H
#define ENG_H

#include "bq.h"

#endif
