// Package passwd reads and edits Mosquitto password files as they are, and
// checks a CONNECT's username and password against one.
//
// The package is pure: it imports nothing of the broker, starts no
// goroutines and does no I/O besides reading (Load) or writing (Save) the
// file it is given. A File is immutable once loaded, so any number of
// goroutines may call Check on it at once; reloading means loading a new
// File and swapping the pointer.
//
// # Format
//
// One "username:hash" a line, as Mosquitto 2.0 reads it (pwfile__parse and
// unpwd__decode_passwords in src/security_default.c):
//
//   - A line whose first byte is '#' is a comment; a line with no ':' and
//     nothing but white space is blank. Both are skipped.
//   - The username is everything before the first ':', the hash the next
//     non-empty ':'-separated field (strtok); both are trimmed of white
//     space, so CRLF files work. Fields after the hash are ignored, as in
//     Mosquitto.
//
// Hashes (Check accepts each; HashPBKDF2 writes the first):
//
//	$7$<iterations>$<base64 salt>$<base64 hash>   PBKDF2-HMAC-SHA512, 64-byte hash (Mosquitto 2.0 and later;
//	                                             mosquitto_passwd 2.0 writes 101 iterations and a 12-byte salt,
//	                                             2.1 writes 1000 iterations and a 64-byte salt)
//	$6$<base64 salt>$<base64 hash>                SHA-512(password ‖ salt) (Mosquitto 1.x, "-H sha512")
//	$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>
//	                                             the PHC string of libargon2's argon2id_hash_encoded, unpadded
//	                                             base64; Mosquitto 2.1 built with argon2 writes
//	                                             m=47104,t=1,p=1 with a 64-byte salt and a 64-byte hash
//	$2a$, $2b$, $2y$                              bcrypt (not Mosquitto's; mosquitto-go-auth and htpasswd -B files)
//
// Stricter than Mosquitto, which logs and drops such entries or skips such
// lines and starts anyway: a non-blank line without ':', an empty username
// or hash, a hash that is not one of the above (a plain-text password: run
// "loopmq passwd -U" first) and a username given twice are errors naming
// the file and line. A File is never half-loaded.
//
// Editor keeps a file's lines (comments, order, even plain-text passwords)
// for "loopmq passwd" to change one entry and write the rest back as they
// were.
package passwd
