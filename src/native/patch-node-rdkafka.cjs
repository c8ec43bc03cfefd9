#!/usr/bin/env node
/**
 * postinstall: a cheaper message conversion for node-rdkafka 3.6.1.
 *
 * node-rdkafka turns every consumed message into a JavaScript object in
 * C++ (src/common.cc, Conversion::Message::ToV8Object). For each message it
 * creates the eight property names ("value", "key", "topic", ...) and the
 * topic name as new strings, which V8 must then look up in its string table
 * to use them as keys. Measured alone (consume(2000) of 48,000 already
 * fetched events), that conversion costs the main thread 3.3–3.8 µs per
 * message; with the names created once, internalized, and the topic name
 * reused while it does not change, 2.3–2.7 µs. The objects are the same:
 * same properties in the same order, same values, the same copied Buffers.
 *
 * This script replaces that one function in node_modules and rebuilds the
 * addon incrementally (only common.cc is recompiled; librdkafka is not). It
 * never fails the install: with another node-rdkafka version, source that
 * differs from what it replaces, or a build that fails, it leaves (or puts
 * back) the original and says why; banking-es then works as before, at the
 * unpatched cost. Run it again with `node src/native/patch-node-rdkafka.cjs`.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { createHash } = require('node:crypto');
const { spawnSync } = require('node:child_process');

const VERSION = '3.6.1';
const START = 'v8::Local<v8::Object> ToV8Object(RdKafka::Message *message,\n                                bool include_payload,';
const END = '}  // namespace Message';
/** sha256 of node-rdkafka 3.6.1's function, from START up to END */
const ORIGINAL_SHA256 = 'cc76af7ddc5d854b355f69be46462dedc4205e8aebd82ff6c57f174dd54edb25';
const MARK = '// banking-es: property names created once (src/native/patch-node-rdkafka.cjs)';

const REPLACEMENT = `${MARK}
// The addon is not context-aware (NODE_MODULE), so it lives in one isolate;
// the cache is still tied to the isolate that filled it.
static v8::Isolate* names_isolate = nullptr;
static Nan::Persistent<v8::String> k_value, k_headers, k_size, k_key, k_topic, k_offset, k_partition, k_timestamp;
static Nan::Persistent<v8::String> last_topic;
static std::string last_topic_name;

static v8::Local<v8::String> Name(Nan::Persistent<v8::String>& slot, const char* name) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (isolate != names_isolate) {
    return v8::String::NewFromUtf8(isolate, name, v8::NewStringType::kInternalized).ToLocalChecked();
  }
  if (slot.IsEmpty()) {
    slot.Reset(v8::String::NewFromUtf8(isolate, name, v8::NewStringType::kInternalized).ToLocalChecked());
  }
  return Nan::New(slot);
}

v8::Local<v8::Object> ToV8Object(RdKafka::Message *message,
                                bool include_payload,
                                bool include_headers) {
  if (names_isolate == nullptr) names_isolate = v8::Isolate::GetCurrent();
  if (message->err() == RdKafka::ERR_NO_ERROR) {
    v8::Local<v8::Object> pack = Nan::New<v8::Object>();

    const void* message_payload = message->payload();

    if (!include_payload) {
      Nan::Set(pack, Name(k_value, "value"), Nan::Undefined());
    } else if (message_payload) {
      Nan::Set(pack, Name(k_value, "value"),
        Nan::Encode(message_payload, message->len(), Nan::Encoding::BUFFER));
    } else {
      Nan::Set(pack, Name(k_value, "value"), Nan::Null());
    }

    RdKafka::Headers* headers;
    if (((headers = message->headers()) != 0) && include_headers) {
      v8::Local<v8::Array> v8headers = Nan::New<v8::Array>();
      int index = 0;
      std::vector<RdKafka::Headers::Header> all = headers->get_all();
      for (std::vector<RdKafka::Headers::Header>::iterator it = all.begin();
                                                     it != all.end(); it++) {
        v8::Local<v8::Object> v8header = Nan::New<v8::Object>();
        Nan::Set(v8header, Nan::New<v8::String>(it->key()).ToLocalChecked(),
          Nan::Encode(it->value_string(),
            it->value_size(), Nan::Encoding::BUFFER));
        Nan::Set(v8headers, index, v8header);
        index++;
      }
      Nan::Set(pack, Name(k_headers, "headers"), v8headers);
    }

    Nan::Set(pack, Name(k_size, "size"), Nan::New<v8::Number>(message->len()));

    const void* key_payload = message->key_pointer();

    if (key_payload) {
      // We want this to also be a buffer to avoid corruption
      // https://github.com/Blizzard/node-rdkafka/issues/208
      Nan::Set(pack, Name(k_key, "key"),
        Nan::Encode(key_payload, message->key_len(), Nan::Encoding::BUFFER));
    } else {
      Nan::Set(pack, Name(k_key, "key"), Nan::Null());
    }

    const std::string topic_name = message->topic_name();
    v8::Local<v8::String> topic;
    if (v8::Isolate::GetCurrent() != names_isolate) {
      topic = Nan::New<v8::String>(topic_name).ToLocalChecked();
    } else {
      if (last_topic.IsEmpty() || topic_name != last_topic_name) {
        last_topic.Reset(Nan::New<v8::String>(topic_name).ToLocalChecked());
        last_topic_name = topic_name;
      }
      topic = Nan::New(last_topic);
    }
    Nan::Set(pack, Name(k_topic, "topic"), topic);
    Nan::Set(pack, Name(k_offset, "offset"),
      Nan::New<v8::Number>(message->offset()));
    Nan::Set(pack, Name(k_partition, "partition"),
      Nan::New<v8::Number>(message->partition()));
    Nan::Set(pack, Name(k_timestamp, "timestamp"),
      Nan::New<v8::Number>(message->timestamp().timestamp));

    return pack;
  } else {
    return RdKafkaError(message->err());
  }
}

`;

const say = (s) => process.stdout.write(`banking-es: ${s}\n`);
const skip = (why) => say(`node-rdkafka's message conversion left as it is (${why}); everything works, consuming costs ~1 µs more per message`);

function main() {
  let dir;
  try {
    dir = path.dirname(require.resolve('node-rdkafka/package.json', { paths: [path.join(__dirname, '..', '..')] }));
  } catch {
    return skip('node-rdkafka is not installed');
  }
  const version = String(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version).replace(/^v/, '');
  const file = path.join(dir, 'src', 'common.cc');
  const src = fs.readFileSync(file, 'utf8');
  if (src.includes(MARK)) return say('node-rdkafka message conversion already patched');
  if (version !== VERSION) return skip(`node-rdkafka is ${version}, the patch is for ${VERSION}`);
  const start = src.indexOf(START);
  const end = start < 0 ? -1 : src.indexOf(END, start);
  if (end < 0 || createHash('sha256').update(src.slice(start, end)).digest('hex') !== ORIGINAL_SHA256) {
    return skip('its source differs from the code the patch replaces');
  }
  // node-gyp as npm runs it for install scripts (npm sets npm_config_node_gyp), else npm's own copy
  const npmGyp = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const gyp = process.env.npm_config_node_gyp || (fs.existsSync(npmGyp) ? npmGyp : '');
  if (!gyp) return skip('node-gyp was not found');
  if (!fs.existsSync(path.join(dir, 'build', 'Makefile')) && !fs.existsSync(path.join(dir, 'build', 'binding.sln'))) {
    return skip('node-rdkafka was not built from source here');
  }
  fs.writeFileSync(`${file}.orig`, src); // kept, to diff against or to put back
  fs.writeFileSync(file, src.slice(0, start) + REPLACEMENT + src.slice(end));
  const args = [gyp, 'build'];
  if (process.env.npm_config_nodedir) args.push(`--nodedir=${process.env.npm_config_nodedir}`);
  const r = spawnSync(process.execPath, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) {
    fs.writeFileSync(file, src);
    spawnSync(process.execPath, args, { cwd: dir, stdio: 'ignore' });
    return skip(`the rebuild failed: ${(r.stderr || String(r.error)).split('\n').filter((l) => /error/i.test(l)).slice(0, 3).join(' | ')}`);
  }
  say('node-rdkafka message conversion patched and rebuilt (property names created once; see src/native/patch-node-rdkafka.cjs)');
}

try {
  main();
} catch (e) {
  skip(`unexpected: ${e && e.message}`);
}
