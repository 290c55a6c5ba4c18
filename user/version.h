#ifndef USER_VERSION_H
#define USER_VERSION_H

#define PGV_VERSION "0.1.0"

#endif /* USER_VERSION_H */
