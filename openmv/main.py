# Mask inspection on the OpenMV H7 (MicroPython, firmware 4.5.6 or later, `ml` module).
#
# Classifies every camera frame as bad / good / no_mask with the int8 model beside this
# file and shows the class on the LED, as the published project did:
#   good mask: green    bad mask: red    no mask: blue
# and prints the class, its confidence and the frame rate.
#
# Copy the bundle (main.py, model.tflite, model.txt) to the camera's flash or SD card.
# The camera takes the centred 240 x 240 square of its QVGA frame, in RGB565; the firmware
# scales it to the model's input and feeds pixel - 128 (the model was built for input scale
# 1/255, zero point -128). The model was trained and measured for exactly this input path.

import math
import ml
import sensor
import time
from pyb import LED

MODEL_FILE = "model.tflite"
LABELS_FILE = "model.txt"
LED_OF_CLASS = {"bad": 1, "good": 2, "no_mask": 3}  # pyb LED numbers: 1 red, 2 green, 3 blue
WINDOW = 240  # the centred square of the QVGA frame, as the pipeline's camera frames are taken


def read_labels(model):
    # Firmware 4.7 and later read model.txt beside model.tflite; 4.5.6-4.6.x leave labels empty.
    if model.labels:
        return list(model.labels)
    with open(LABELS_FILE) as f:
        return [line.strip() for line in f if line.strip()]


def setup_camera():
    sensor.reset()
    sensor.set_pixformat(sensor.RGB565)
    # The same square on every firmware: 4.x crops a wider frame to the model's aspect, 5.x
    # stretches it; a square window is scaled alike by both.
    sensor.set_framesize(sensor.QVGA)
    sensor.set_windowing((WINDOW, WINDOW))
    sensor.skip_frames(time=2000)


def show(leds, label):
    for name, led in leds.items():
        if name == label:
            led.on()
        else:
            led.off()


def main():
    model = ml.Model(MODEL_FILE, load_to_fb=True)
    labels = read_labels(model)
    setup_camera()
    leds = {name: LED(number) for name, number in LED_OF_CLASS.items()}
    clock = time.clock()
    print("model: %d bytes, arena %d bytes, input %s, labels %s" % (model.len, model.ram, model.input_shape, labels))
    while True:
        clock.tick()
        img = sensor.snapshot()
        scores = model.predict([img])[0].flatten().tolist()
        best = 0
        for i in range(1, len(scores)):
            if scores[i] > scores[best]:
                best = i
        # The model ends in logits: a softmax turns them into a confidence.
        top = scores[best]
        total = 0.0
        for s in scores:
            total += math.exp(s - top)
        label = labels[best]
        show(leds, label)
        print("%s %.2f %.1f fps" % (label, 1.0 / total, clock.fps()))


main()
